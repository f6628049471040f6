/* C twin of per-packet work in vpnhub/net (issue 16; docs/ARCHITECTURE.md,
 * "C accelerators").  The Python code stays the reference and the fallback:
 *
 * - ones_sum(data, initial=0, start=0): tunoffload.ones_sum_py, the RFC 1071
 *   one's-complement sum of data[start:] (an odd length padded with a zero
 *   byte) plus `initial`, modulo 0xFFFF ("zero" is 0, never 0xFFFF).
 * - recv_batch(fd, area, count): udpgso.BatchReader's receive, the datagrams
 *   queued on a non-blocking UDP socket, up to `count` in one recvmmsg(2), with
 *   their IPv4 source and, for a UDP GRO train, its segment size; a train comes
 *   back split exactly as udpgso.GroReader splits it.
 *
 * Every input is hostile: any length, any buffer; no copy of `data` is made;
 * a datagram is whatever the kernel hands (truncated, empty, odd control
 * messages) and comes back as recvfrom would give it.
 */

#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_GRO
#define UDP_GRO 104 /* include/uapi/linux/udp.h */
#endif

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


/* -- batched UDP receive (recvmmsg) -------------------------------------- */

#define MAX_BATCH 128
/* Room for the UDP_GRO int and a few more control messages (an odd option set
 * on the socket): what does not fit is cut by the kernel (MSG_CTRUNC) and the
 * rest is still read, as Python's recvmsg does. */
#define CONTROL_ROOM 128

/* (host, port) of `sa`, or ("", 0) when it is not IPv4 (as udpgso._address). */
static PyObject *
address_of(const struct sockaddr_in *sa, socklen_t len)
{
    char host[INET_ADDRSTRLEN] = "";
    unsigned int port = 0;
    if (len >= (socklen_t)sizeof(*sa) && sa->sin_family == AF_INET) {
        if (inet_ntop(AF_INET, &sa->sin_addr, host, sizeof(host)) == NULL)
            host[0] = '\0';
        port = ntohs(sa->sin_port);
    }
    return Py_BuildValue("(sI)", host, port);
}

/* The UDP_GRO segment size of a message, 0 without one (udp_cmsg_recv,
 * include/net/udp.h; any other control message is ignored). */
static int
gro_size(struct msghdr *msg)
{
    int size = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO
            && c->cmsg_len >= CMSG_LEN(sizeof(int)))
            memcpy(&size, CMSG_DATA(c), sizeof(int));
    }
    return size;
}

/* Append (data[off:off+len], addr, size) to `out`. */
static int
append_entry(PyObject *out, const char *data, Py_ssize_t len, PyObject *addr, int size)
{
    PyObject *bytes = PyBytes_FromStringAndSize(data, len);
    if (bytes == NULL)
        return -1;
    PyObject *seg = PyLong_FromLong(size);
    PyObject *entry = seg == NULL ? NULL : PyTuple_New(3);
    if (entry == NULL) {
        Py_DECREF(bytes);
        Py_XDECREF(seg);
        return -1;
    }
    Py_INCREF(addr);
    PyTuple_SET_ITEM(entry, 0, bytes);
    PyTuple_SET_ITEM(entry, 1, addr);
    PyTuple_SET_ITEM(entry, 2, seg);
    int rc = PyList_Append(out, entry);
    Py_DECREF(entry);
    return rc;
}

PyDoc_STRVAR(recv_batch_doc,
"recv_batch(fd, area, count) -> list[tuple[bytes, tuple[str, int], int]]\n\n"
"One recvmmsg(2) of up to `count` (1..128) datagrams on the UDP socket `fd`\n"
"(MSG_DONTWAIT), each into its slot of len(area) // count bytes of the\n"
"writable buffer `area`. Returns (datagram, (host, port), size) per datagram\n"
"in arrival order; a UDP GRO train (size > 0 and below its length) comes back\n"
"as its segments of `size` bytes (the last may be shorter), each with the\n"
"train's size; a lone datagram has size 0. A datagram longer than a slot is\n"
"cut to it, as recvfrom(slot) cuts it. Raises OSError as recvfrom does\n"
"(BlockingIOError when none is queued; EINTR is retried).");

static PyObject *
netfast_recv_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "recv_batch(fd, area, count) takes 3 arguments");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    long count = PyLong_AsLong(args[2]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT32_MAX || count < 1 || count > MAX_BATCH) {
        PyErr_SetString(PyExc_ValueError, "recv_batch(): fd must be >= 0, count 1..128");
        return NULL;
    }
    Py_buffer area;
    if (PyObject_GetBuffer(args[1], &area, PyBUF_WRITABLE) < 0)
        return NULL;
    size_t slot = (size_t)area.len / (size_t)count;
    if (slot == 0) {
        PyBuffer_Release(&area);
        PyErr_SetString(PyExc_ValueError, "recv_batch(): area smaller than count bytes");
        return NULL;
    }
    if (slot > 65536 * 4)
        slot = 65536 * 4;  /* no datagram is longer; keeps iov_len sane */

    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iovs[MAX_BATCH];
    struct sockaddr_in names[MAX_BATCH];
    union { char buf[CONTROL_ROOM]; struct cmsghdr align; } controls[MAX_BATCH];
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)count);
    memset(names, 0, sizeof(struct sockaddr_in) * (size_t)count);
    for (long i = 0; i < count; i++) {
        iovs[i].iov_base = (char *)area.buf + (size_t)i * slot;
        iovs[i].iov_len = slot;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
        msgs[i].msg_hdr.msg_control = controls[i].buf;
        msgs[i].msg_hdr.msg_controllen = CONTROL_ROOM;
    }
    int n, err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        n = recvmmsg((int)fd, msgs, (unsigned int)count, MSG_DONTWAIT, NULL);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0 || err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {  /* PEP 475: retry unless a handler raised */
            PyBuffer_Release(&area);
            return NULL;
        }
    }
    if (n < 0) {
        PyBuffer_Release(&area);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }

    PyObject *out = PyList_New(0);
    PyObject *addr = NULL;  /* the last source's tuple, reused while it repeats */
    struct sockaddr_in last;
    socklen_t last_len = 0;
    if (out == NULL)
        goto fail;
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &msgs[i].msg_hdr;
        size_t len = msgs[i].msg_len;
        if (len > slot)  /* never: the kernel copies at most the slot */
            len = slot;
        if (addr == NULL || h->msg_namelen != last_len
            || memcmp(&names[i], &last, sizeof(last)) != 0) {
            Py_XDECREF(addr);
            addr = address_of(&names[i], h->msg_namelen);
            if (addr == NULL)
                goto fail;
            memcpy(&last, &names[i], sizeof(last));
            last_len = h->msg_namelen;
        }
        const char *data = iovs[i].iov_base;
        int size = gro_size(h);
        if (size <= 0 || (size_t)size >= len) {  /* one datagram (GroReader.read) */
            if (append_entry(out, data, (Py_ssize_t)len, addr, 0) < 0)
                goto fail;
            continue;
        }
        for (size_t off = 0; off < len; off += (size_t)size) {
            size_t piece = len - off < (size_t)size ? len - off : (size_t)size;
            if (append_entry(out, data + off, (Py_ssize_t)piece, addr, size) < 0)
                goto fail;
        }
    }
    Py_XDECREF(addr);
    PyBuffer_Release(&area);
    return out;

fail:
    Py_XDECREF(addr);
    Py_XDECREF(out);
    PyBuffer_Release(&area);
    return NULL;
}

static PyMethodDef netfast_methods[] = {
    {"recv_batch", (PyCFunction)(void (*)(void))netfast_recv_batch, METH_FASTCALL,
     recv_batch_doc},
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
