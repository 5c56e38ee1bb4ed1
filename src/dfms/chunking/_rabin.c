/* placeholder: replaced by the real Rabin chunker */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_rabin", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__rabin(void) { return PyModule_Create(&mod); }
