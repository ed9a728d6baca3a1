"""Publishing: upload and read back (`publish`), static index (`index`), `constraints`."""
