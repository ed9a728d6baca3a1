// The Python module of vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so: vLLM's
// flash_attn_interface.py does `from . import _vllm_fa2_C` (its FA2_AVAILABLE test),
// so the op library must also be an importable extension module. Importing it loads the
// library, whose static initializers register torch.ops._vllm_fa2_C (vllm_fa2_api.cu).
// Limited API 3.11 (vLLM's requires-python floor), as vLLM's own stable-ABI extensions.
#define Py_LIMITED_API 0x030B0000
#include <Python.h>

static struct PyModuleDef vllm_fa2_module = {PyModuleDef_HEAD_INIT, "_vllm_fa2_C", nullptr, 0,
                                             nullptr};

PyMODINIT_FUNC PyInit__vllm_fa2_C(void) { return PyModule_Create(&vllm_fa2_module); }
