/* C twin of per-packet work in vpnhub/net (issue 16; docs/ARCHITECTURE.md,
 * "C accelerators").  The Python code stays the reference and the fallback:
 *
 * - ones_sum(data, initial=0, start=0): tunoffload.ones_sum_py, the RFC 1071
 *   one's-complement sum of data[start:] (an odd length padded with a zero
 *   byte) plus `initial`, modulo 0xFFFF ("zero" is 0, never 0xFFFF).
 *
 * Every input is hostile: any length, any buffer; no copy of `data` is made.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* -- one's-complement sum (RFC 1071) ------------------------------------- */

/* The sum of `len` bytes as native-order 64-bit words with end-around carry,
 * i.e. modulo 2**64 - 1.  0xFFFF divides 2**64 - 1, so the result is still the
 * big-endian sum modulo 0xFFFF once folded and byte-swapped (RFC 1071 2(B):
 * the sum is independent of byte order up to a swap; a swap of a 16-bit value
 * is a multiplication by 256 modulo 0xFFFF).  A tail shorter than a word is
 * padded with zero bytes at its end, which is the odd-length rule too. */
static uint64_t
sum64(const unsigned char *p, size_t len)
{
    uint64_t acc = 0, w;
    while (len >= 32) {
        uint64_t a, b, c, d;
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        memcpy(&c, p + 16, 8);
        memcpy(&d, p + 24, 8);
        acc += a;
        acc += (acc < a);
        acc += b;
        acc += (acc < b);
        acc += c;
        acc += (acc < c);
        acc += d;
        acc += (acc < d);
        p += 32;
        len -= 32;
    }
    while (len >= 8) {
        memcpy(&w, p, 8);
        acc += w;
        acc += (acc < w);
        p += 8;
        len -= 8;
    }
    if (len) {
        w = 0;
        memcpy(&w, p, len);  /* the first bytes of the word in memory order */
        acc += w;
        acc += (acc < w);
    }
    return acc;
}

/* The big-endian 16-bit one's-complement sum of the bytes, modulo 0xFFFF. */
static unsigned int
ones_mod(const unsigned char *p, size_t len)
{
    uint64_t acc = sum64(p, len);
    acc = (acc & 0xFFFFFFFFu) + (acc >> 32);
    acc = (acc & 0xFFFFFFFFu) + (acc >> 32);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    unsigned int s = (unsigned int)acc;  /* 0..0xFFFF, native order */
#if PY_LITTLE_ENDIAN
    s = ((s & 0xFF) << 8) | (s >> 8);
#endif
    return s % 0xFFFF;
}

/* `initial` modulo 0xFFFF, as Python's % (never negative), for any int. */
static int
initial_mod(PyObject *initial, unsigned int *out)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(initial, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {
        long long m = v % 0xFFFF;
        *out = (unsigned int)(m < 0 ? m + 0xFFFF : m);
        return 0;
    }
    PyObject *mod = PyLong_FromLong(0xFFFF);
    if (mod == NULL)
        return -1;
    PyObject *r = PyNumber_Remainder(initial, mod);
    Py_DECREF(mod);
    if (r == NULL)
        return -1;
    long rv = PyLong_AsLong(r);
    Py_DECREF(r);
    if (rv == -1 && PyErr_Occurred())
        return -1;
    *out = (unsigned int)rv;
    return 0;
}

PyDoc_STRVAR(ones_sum_doc,
"ones_sum(data, initial=0, start=0) -> int\n\n"
"The one's-complement sum of the 16-bit big-endian words of data[start:]\n"
"(`data` any contiguous buffer, not copied; an odd length padded with a zero\n"
"byte) plus `initial`, modulo 0xFFFF (so \"zero\" is 0, never 0xFFFF):\n"
"vpnhub.net.tunoffload.ones_sum_py.");

static PyObject *
netfast_ones_sum(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    (void)self;
    static const char *const names[] = {"data", "initial", "start"};
    PyObject *given[3] = {NULL, NULL, NULL};
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw > 3) {
        PyErr_SetString(PyExc_TypeError, "ones_sum() takes at most 3 arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        given[i] = args[i];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        int which = -1;
        for (int k = 0; k < 3; k++)
            if (PyUnicode_CompareWithASCIIString(name, names[k]) == 0)
                which = k;
        if (which < 0 || given[which] != NULL) {
            PyErr_Format(PyExc_TypeError, "ones_sum() got an unexpected or repeated "
                         "argument '%U'", name);
            return NULL;
        }
        given[which] = args[nargs + i];
    }
    if (given[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "ones_sum() missing required argument 'data'");
        return NULL;
    }
    unsigned int init = 0;
    if (given[1] != NULL) {
        if (!PyLong_Check(given[1])) {
            PyErr_SetString(PyExc_TypeError, "ones_sum() initial must be an int");
            return NULL;
        }
        if (initial_mod(given[1], &init) < 0)
            return NULL;
    }
    Py_ssize_t start = 0;
    if (given[2] != NULL) {
        start = PyLong_AsSsize_t(given[2]);
        if (start == -1 && PyErr_Occurred())
            return NULL;
        if (start < 0) {
            PyErr_SetString(PyExc_ValueError, "ones_sum() start must not be negative");
            return NULL;
        }
    }
    Py_buffer view;
    if (PyObject_GetBuffer(given[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned int s = 0;
    if (start < view.len)
        s = ones_mod((const unsigned char *)view.buf + start, (size_t)(view.len - start));
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong((s + init) % 0xFFFF);
}

static PyMethodDef netfast_methods[] = {
    {"ones_sum", (PyCFunction)(void (*)(void))netfast_ones_sum,
     METH_FASTCALL | METH_KEYWORDS, ones_sum_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef netfast_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vpnhub.net._netfast",
    .m_doc = "C twin of per-packet work in vpnhub/net (docs/ARCHITECTURE.md).",
    .m_size = 0,
    .m_methods = netfast_methods,
};

PyMODINIT_FUNC
PyInit__netfast(void)
{
    return PyModuleDef_Init(&netfast_module);
}
