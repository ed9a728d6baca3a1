#pragma once
#define TINY_VERSION 1
int tiny_version();
