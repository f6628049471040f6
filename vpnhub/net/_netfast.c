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
 * - send_batch(fd, items, start, prefix): udpgso.send_batch_py, datagrams to
 *   IPv4 addresses in one sendmmsg(2), each after `prefix` (the non-ESP marker
 *   of IKE on 4500) without a copy; the count the kernel took.
 * - read_frames(fd, size, count): tun.read_frames_py, the frames queued on a TUN
 *   queue, one read(2) each, ending at EAGAIN without raising (the exception
 *   that ended each wake-up's TUN reads cost as much as a read, issue 16).
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
#include <unistd.h>

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


/* -- batched UDP send (sendmmsg) ----------------------------------------- */

/* Datagrams per sendmmsg(2): the kernel takes at most UIO_MAXIOV (1024); 256 keep
 * the arrays on the stack small (about 28 KiB) and a call short. */
#define MAX_SEND 256

PyDoc_STRVAR(send_batch_doc,
"send_batch(fd, items, start, prefix) -> int\n\n"
"udpgso.send_batch_py: items[start:], a list of (bytes, (host, port)) with an\n"
"IPv4 host, in order, each after the bytes `prefix`, in one sendmmsg(2) of at\n"
"most 256 on the UDP socket `fd`. Returns how many the kernel took (0 when\n"
"items[start:] is empty). A datagram it refused ends the call: before it, the\n"
"count is returned (the next call meets it again); first, its OSError is\n"
"raised as sendto raises it (BlockingIOError when the send buffer is full;\n"
"EINTR is retried). A host that is not an IPv4 address is refused like that\n"
"(EINVAL); a port outside 0..65535 raises OverflowError, as sendto does.");

/* items[i] as (data, sockaddr): 1, 0 with an OSError to raise for it (a bad host),
 * -1 with another exception (a malformed item: the caller's bug). */
static int
send_item(PyObject *item, PyObject **data, struct sockaddr_in *sa)
{
    PyObject *addr, *host, *port;
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
        || !PyBytes_Check(PyTuple_GET_ITEM(item, 0))
        || !PyTuple_Check(addr = PyTuple_GET_ITEM(item, 1)) || PyTuple_GET_SIZE(addr) != 2
        || !PyUnicode_Check(host = PyTuple_GET_ITEM(addr, 0))
        || !PyLong_Check(port = PyTuple_GET_ITEM(addr, 1))) {
        PyErr_SetString(PyExc_TypeError,
                        "send_batch() takes a list of (bytes, (str, int)) tuples");
        return -1;
    }
    long p = PyLong_AsLong(port);
    if (p == -1 && PyErr_Occurred())
        return -1;
    if (p < 0 || p > 65535) {
        PyErr_SetString(PyExc_OverflowError, "sendto(): port must be 0-65535.");
        return -1;
    }
    const char *h = PyUnicode_AsUTF8(host);
    if (h == NULL)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)p);
    if (inet_pton(AF_INET, h, &sa->sin_addr) != 1)
        return 0;
    *data = PyTuple_GET_ITEM(item, 0);
    return 1;
}

static PyObject *
netfast_send_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "send_batch(fd, items, start, prefix) takes 4 arguments");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT32_MAX || start < 0) {
        PyErr_SetString(PyExc_ValueError, "send_batch(): fd and start must be >= 0");
        return NULL;
    }
    if (!PyList_Check(args[1]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "send_batch() takes a list and a bytes prefix");
        return NULL;
    }
    PyObject *items = args[1];
    Py_ssize_t total = PyList_GET_SIZE(items);
    Py_ssize_t count = start < total ? total - start : 0;
    if (count > MAX_SEND)
        count = MAX_SEND;
    char *prefix = PyBytes_AS_STRING(args[3]);
    size_t prefix_len = (size_t)PyBytes_GET_SIZE(args[3]);

    struct mmsghdr msgs[MAX_SEND];
    struct iovec iovs[MAX_SEND][2];
    struct sockaddr_in names[MAX_SEND];
    /* The datagrams stay referenced while the GIL is released: the list is the
     * caller's, and another thread could change it meanwhile. */
    PyObject *held[MAX_SEND];
    int n = 0, bad_host = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *data = NULL;
        int rc = send_item(PyList_GET_ITEM(items, start + i), &data, &names[n]);
        if (rc < 0) {
            for (int k = 0; k < n; k++)
                Py_DECREF(held[k]);
            return NULL;
        }
        if (rc == 0) {  /* sent up to it; it comes first in the next call */
            bad_host = 1;
            break;
        }
        Py_INCREF(data);
        held[n] = data;
        struct iovec *v = iovs[n];
        int parts = 0;
        if (prefix_len) {
            v[parts].iov_base = prefix;
            v[parts++].iov_len = prefix_len;
        }
        v[parts].iov_base = PyBytes_AS_STRING(data);
        v[parts++].iov_len = (size_t)PyBytes_GET_SIZE(data);
        memset(&msgs[n], 0, sizeof(msgs[n]));
        msgs[n].msg_hdr.msg_iov = v;
        msgs[n].msg_hdr.msg_iovlen = (size_t)parts;
        msgs[n].msg_hdr.msg_name = &names[n];
        msgs[n].msg_hdr.msg_namelen = sizeof(names[n]);
        n++;
    }
    if (n == 0) {
        if (bad_host) {
            errno = EINVAL;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return PyLong_FromLong(0);
    }
    /* The prefix is the caller's bytes object too: held by `args` for the call. */
    int sent, err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        sent = sendmmsg((int)fd, msgs, (unsigned int)n, 0);
        err = errno;
        Py_END_ALLOW_THREADS
        if (sent >= 0 || err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {  /* PEP 475: retry unless a handler raised */
            sent = -2;
            break;
        }
    }
    for (int k = 0; k < n; k++)
        Py_DECREF(held[k]);
    if (sent == -2)
        return NULL;
    if (sent < 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(sent);
}


/* -- coalescing the decrypted packets of a batch (tunoffload.coalesce) ---- */

/* The rule is tunoffload.py's (its module doc and _candidate, _Run.takes,
 * _sound, _Run.frame), step for step; tests/net/test_netfast.py compares the two
 * on hostile batches.  The runs are found by flow key (addresses and ports, 12
 * bytes) in an open-addressing table that never deletes: a key maps to the
 * latest run made for it, and the run's `open` flag says whether the Python
 * dict would still hold it (popped, deleted or replaced runs are closed). */

#define CO_TCP 6
#define CO_ACK 0x10
#define CO_PSH 0x08
#define CO_VNET 10
#define CO_MAX_IP 65535

typedef struct {
    Py_ssize_t head;        /* index of the first segment */
    Py_ssize_t last_part;   /* index of the last segment joined (head if none) */
    size_t ihl, hl, size, total;
    uint32_t next_seq;
    Py_ssize_t count;
    int pushed, shortened, open;
} co_run;

static uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* _candidate: 1 with *ihl, *hl set if `p` may join a run. */
static int
co_candidate(const unsigned char *p, size_t n, size_t *ihl, size_t *hl)
{
    if (n < 40 || p[0] >> 4 != 4 || p[9] != CO_TCP)
        return 0;
    size_t i = (size_t)(p[0] & 0x0F) * 4;
    if (i < 20 || n < i + 20 || (((size_t)p[2] << 8) | p[3]) != n)
        return 0;
    if ((p[6] & 0x3F) || p[7])
        return 0;
    if ((p[i + 13] & ~CO_PSH & 0xFF) != CO_ACK)
        return 0;
    size_t h = i + (size_t)(p[i + 12] >> 4) * 4;
    if (h - i < 20 || h >= n)
        return 0;
    *ihl = i;
    *hl = h;
    return 1;
}

/* _sound: the TCP checksum of the segment is right (pseudo-header included). */
static int
co_sound(const unsigned char *p, size_t n, size_t ihl)
{
    unsigned int pseudo = (ones_mod(p + 12, 8) + CO_TCP + (unsigned int)(n - ihl)) % 0xFFFF;
    return (ones_mod(p + ihl, n - ihl) + pseudo) % 0xFFFF == 0;
}

/* _Run.takes */
static int
co_takes(const co_run *r, const unsigned char *head, const unsigned char *p, size_t n,
         size_t ihl, size_t hl)
{
    size_t payload = n - hl;
    return !r->pushed && !r->shortened && ihl == r->ihl && hl == r->hl
        && payload <= r->size && r->total + payload <= CO_MAX_IP
        && memcmp(p + ihl + 8, head + ihl + 8, 4) == 0
        && be32(p + ihl + 4) == r->next_seq
        && p[1] == head[1] && p[8] == head[8]
        && p[6] >> 5 == head[6] >> 5
        && memcmp(p + ihl + 20, head + ihl + 20, hl - ihl - 20) == 0;
}

static size_t
co_hash(const unsigned char *key)
{
    uint64_t a, b = 0;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 4);
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ULL)) * 0xFF51AFD7ED558CCDULL;
    return (size_t)(h ^ (h >> 29));
}

typedef struct {
    unsigned char key[12];
    Py_ssize_t run;  /* -1: empty slot */
} co_slot;

/* The slot of `key`: where it is, or the empty one where it goes. */
static co_slot *
co_find(co_slot *table, size_t mask, const unsigned char *key)
{
    size_t i = co_hash(key) & mask;
    while (table[i].run >= 0 && memcmp(table[i].key, key, 12) != 0)
        i = (i + 1) & mask;
    return &table[i];
}

static PyObject *
co_alone(const unsigned char *p, size_t n)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(CO_VNET + n));
    if (out != NULL) {
        char *q = PyBytes_AS_STRING(out);
        memset(q, 0, CO_VNET);
        memcpy(q + CO_VNET, p, n);
    }
    return out;
}

static void
put16be(unsigned char *p, unsigned int v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void
put16le(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

/* _Run.frame of a run of 2 or more: virtio_net_hdr (NEEDS_CSUM, GSO_TCPV4), the
 * head's headers fixed up, the payloads. */
static PyObject *
co_frame(const co_run *r, PyObject *const *items, const Py_ssize_t *next)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(CO_VNET + r->total));
    if (out == NULL)
        return NULL;
    unsigned char *q = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *head = (const unsigned char *)PyBytes_AS_STRING(items[r->head]);
    size_t ihl = r->ihl, hl = r->hl;
    q[0] = 1;  /* F_NEEDS_CSUM */
    q[1] = 1;  /* GSO_TCPV4 */
    put16le(q + 2, hl);
    put16le(q + 4, r->size);
    put16le(q + 6, ihl);
    put16le(q + 8, 16);
    unsigned char *h = q + CO_VNET;
    memcpy(h, head, (size_t)PyBytes_GET_SIZE(items[r->head]));
    if (r->pushed)
        h[ihl + 13] |= CO_PSH;
    put16be(h + 2, (unsigned int)r->total);
    h[10] = h[11] = 0;
    put16be(h + 10, 0xFFFF - ones_mod(h, ihl));
    /* NEEDS_CSUM: the pseudo-header sum over the whole TCP length, not complemented */
    unsigned int pseudo = (ones_mod(h + 12, 8) + CO_TCP + (unsigned int)(r->total - ihl))
        % 0xFFFF;
    put16be(h + ihl + 16, pseudo ? pseudo : 0xFFFF);
    unsigned char *w = h + PyBytes_GET_SIZE(items[r->head]);
    for (Py_ssize_t i = next[r->head]; i >= 0; i = next[i]) {
        size_t n = (size_t)PyBytes_GET_SIZE(items[i]);
        memcpy(w, PyBytes_AS_STRING(items[i]) + hl, n - hl);
        w += n - hl;
    }
    return out;
}

PyDoc_STRVAR(coalesce_doc,
"coalesce(packets) -> list[bytes]\n\n"
"vpnhub.net.tunoffload.coalesce_py: the TUN writes (virtio_net_hdr + packet)\n"
"for a list of IPv4 packets (bytes), each flow's consecutive TCP segments\n"
"joined into one GSO_TCPV4 super-packet, everything else alone.");

static PyObject *
netfast_coalesce(PyObject *self, PyObject *packets)
{
    (void)self;
    /* A tuple of our own: no Python code runs below, but the list is the caller's. */
    PyObject *seq = PySequence_Tuple(packets);
    if (seq == NULL)
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(seq);
    PyObject *const *items = &PyTuple_GET_ITEM(seq, 0);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyBytes_Check(items[i])) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "coalesce() takes a list of bytes");
            return NULL;
        }
    }
    size_t cap = 16;
    while (cap < 2 * (size_t)count)
        cap <<= 1;
    co_run *runs = PyMem_Malloc(sizeof(co_run) * (size_t)(count ? count : 1));
    Py_ssize_t *next = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(count ? count : 1));
    /* frames: >= 0 a run, < 0 a packet alone (-1 - index) */
    Py_ssize_t *frames = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(count ? count : 1));
    co_slot *table = PyMem_Malloc(sizeof(co_slot) * cap);
    PyObject *out = NULL;
    Py_ssize_t nruns = 0, nframes = 0;
    if (runs == NULL || next == NULL || frames == NULL || table == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < cap; i++)
        table[i].run = -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(items[i]);
        size_t n = (size_t)PyBytes_GET_SIZE(items[i]), ihl, hl;
        unsigned char key[12];
        next[i] = -1;
        if (!co_candidate(p, n, &ihl, &hl)) {
            if (n >= 24 && p[9] == CO_TCP) {  /* a FIN, SYN, pure ACK... ends its flow's run */
                size_t at = (size_t)(p[0] & 0x0F) * 4;
                if (at + 4 <= n) {  /* else its key is short: no run has it */
                    memcpy(key, p + 12, 8);
                    memcpy(key + 8, p + at, 4);
                    co_slot *s = co_find(table, cap - 1, key);
                    if (s->run >= 0)
                        runs[s->run].open = 0;
                }
            }
            frames[nframes++] = -1 - i;
            continue;
        }
        memcpy(key, p + 12, 8);
        memcpy(key + 8, p + ihl, 4);
        co_slot *s = co_find(table, cap - 1, key);
        if (s->run >= 0 && runs[s->run].open) {
            co_run *r = &runs[s->run];
            const unsigned char *head = (const unsigned char *)PyBytes_AS_STRING(items[r->head]);
            if (co_takes(r, head, p, n, ihl, hl)) {
                if (r->count == 1
                    && !co_sound(head, (size_t)PyBytes_GET_SIZE(items[r->head]), ihl)) {
                    r->open = 0;  /* its head stays alone; this one may start a run */
                } else if (!co_sound(p, n, ihl)) {
                    frames[nframes++] = -1 - i;
                    continue;
                } else {
                    size_t payload = n - hl;
                    next[r->last_part] = i;
                    r->last_part = i;
                    r->total += payload;
                    r->count++;
                    r->next_seq += (uint32_t)payload;
                    r->shortened = payload < r->size;
                    r->pushed = (p[r->ihl + 13] & CO_PSH) != 0;
                    continue;
                }
            }
        }
        co_run *r = &runs[nruns];
        r->head = r->last_part = i;
        r->ihl = ihl;
        r->hl = hl;
        r->size = n - hl;
        r->total = n;
        r->next_seq = be32(p + ihl + 4) + (uint32_t)r->size;
        r->count = 1;
        r->pushed = (p[ihl + 13] & CO_PSH) != 0;
        r->shortened = 0;
        if (s->run >= 0)
            runs[s->run].open = 0;  /* replaced in the dict */
        r->open = 1;
        memcpy(s->key, key, 12);
        s->run = nruns;
        frames[nframes++] = nruns++;
    }
    out = PyList_New(nframes);
    if (out == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < nframes; k++) {
        PyObject *f;
        Py_ssize_t which = frames[k];
        if (which < 0) {
            PyObject *pkt = items[-1 - which];
            f = co_alone((const unsigned char *)PyBytes_AS_STRING(pkt),
                         (size_t)PyBytes_GET_SIZE(pkt));
        } else if (runs[which].count == 1) {
            PyObject *pkt = items[runs[which].head];
            f = co_alone((const unsigned char *)PyBytes_AS_STRING(pkt),
                         (size_t)PyBytes_GET_SIZE(pkt));
        } else {
            f = co_frame(&runs[which], items, next);
        }
        if (f == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, k, f);
    }
done:
    PyMem_Free(runs);
    PyMem_Free(next);
    PyMem_Free(frames);
    PyMem_Free(table);
    Py_DECREF(seq);
    return out;
}

/* -- reading a TUN queue's frames (tun.read_frames_py) --------------------- */

#define MAX_FRAMES 64
#define MAX_FRAME (1 << 20)

PyDoc_STRVAR(read_frames_doc,
"read_frames(fd, size, count) -> list[bytes]\n\n"
"vpnhub.net.tun.read_frames_py: up to `count` (1..64) read(2)s of at most\n"
"`size` (1..1 MiB) bytes each on the non-blocking fd, in order, until one\n"
"finds nothing (EAGAIN: no exception, the list is shorter, maybe empty).\n"
"Another error is raised as OSError if it comes first, else the frames read\n"
"before it are returned (the next call meets it again); EINTR is retried.");

static PyObject *
netfast_read_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read_frames(fd, size, count) takes 3 arguments");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    long size = PyLong_AsLong(args[1]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    long count = PyLong_AsLong(args[2]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT32_MAX || size < 1 || size > MAX_FRAME || count < 1
        || count > MAX_FRAMES) {
        PyErr_SetString(PyExc_ValueError,
                        "read_frames(): fd must be >= 0, size 1..1048576, count 1..64");
        return NULL;
    }
    char *buf = PyMem_Malloc((size_t)size);
    if (buf == NULL)
        return PyErr_NoMemory();
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyMem_Free(buf);
        return NULL;
    }
    while (PyList_GET_SIZE(out) < count) {
        ssize_t n;
        int err;
        Py_BEGIN_ALLOW_THREADS
        n = read((int)fd, buf, (size_t)size);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0)  /* PEP 475: retry unless a handler raised */
                    goto fail;
                continue;
            }
            if (err == EAGAIN || err == EWOULDBLOCK || PyList_GET_SIZE(out) > 0)
                break;
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        PyObject *frame = PyBytes_FromStringAndSize(buf, n);
        if (frame == NULL)
            goto fail;
        int rc = PyList_Append(out, frame);
        Py_DECREF(frame);
        if (rc < 0)
            goto fail;
    }
    PyMem_Free(buf);
    return out;

fail:
    PyMem_Free(buf);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef netfast_methods[] = {
    {"coalesce", (PyCFunction)netfast_coalesce, METH_O, coalesce_doc},
    {"read_frames", (PyCFunction)(void (*)(void))netfast_read_frames, METH_FASTCALL,
     read_frames_doc},
    {"recv_batch", (PyCFunction)(void (*)(void))netfast_recv_batch, METH_FASTCALL,
     recv_batch_doc},
    {"send_batch", (PyCFunction)(void (*)(void))netfast_send_batch, METH_FASTCALL,
     send_batch_doc},
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
