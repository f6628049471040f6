/* C twin of the per-packet ESP codec of sa.py (docs/ARCHITECTURE.md, "C accelerators").
 *
 * One Codec object per SA direction keeps the keyed OpenSSL state: an
 * EVP_CIPHER_CTX keyed once (each packet only sets its IV) and, for CBC suites,
 * two digest contexts holding HMAC's keyed inner and outer states (RFC 2104:
 * H(K xor opad || H(K xor ipad || data))), copied into a work context per
 * packet.  Each packet is one call: encap() builds the whole ESP packet
 * (RFC 4303 2), decap() checks length, ICV / tag and padding and returns the
 * inner packet.  The replay window, the counters and the next-header policy
 * stay in sa.py around the call.  Sans-I/O like the rest of esp/: no sockets,
 * no clocks; secrets live only in the OpenSSL contexts, freed with the object.
 *
 * The GIL is kept: a 1400-byte packet is ~1-2 us of crypto, less than the cost
 * of releasing and taking it back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

/* ESP transform IDs (RFC 2407 4.4.4, suites.py). */
#define ESP_AES_CBC 12
#define ESP_AES_GCM_16 20

/* decap() failure codes; sa.py maps them to its EspDrop reasons. */
#define ERR_SHORT 1       /* short_packet */
#define ERR_AUTH 2        /* auth_failed */
#define ERR_PADDING 3     /* bad_padding (the packet was authentic) */
#define ERR_REPLAY_CHECK 4 /* seq <= top: the caller's window decides, then calls again */
/* receive() only: the window (a Window) decided in C. */
#define ERR_REPLAY 5      /* replay */
#define ERR_NEXT_HEADER 6 /* bad_next_header (authentic: the window moved) */
#define ERR_DUMMY 7       /* dummy_packet, next header 59 (RFC 4303 2.6; the window moved) */
/* receive() only, after a good decapsulation: the inner packet failed its check. */
#define ERR_SPOOFED 8     /* spoofed_source */
#define ERR_BAD_INNER 9   /* bad_inner_packet */

#define CBC_BLOCK 16
#define GCM_IV 8    /* explicit IV (RFC 4106 3.1) */
#define GCM_SALT 4  /* nonce = salt || IV (RFC 4106 4) */
#define GCM_TAG 16  /* ICV of AES-GCM-16 */
#define MAX_PAD 255

/* -- the anti-replay window (replay.py's ReplayWindow, RFC 4303 3.4.3, RFC 6479) --
 * The same ring of 64-bit blocks, size // 64 + 1 of them, the same rules; replay.py
 * is the reference (tests/esp/test_esp_fast.py compares the two).  `top` is read and
 * set from Python (a restarted worker resumes an SA at its old top, as ReplayWindow:
 * setting it leaves the bits as they are). */

#define SEQ_MAX 0xFFFFFFFFULL

typedef struct {
    PyObject_HEAD
    unsigned long long top;
    unsigned long long size;
    Py_ssize_t nblocks;
    uint64_t *blocks;
} Window;

static int window_check(const Window *w, unsigned long long seq)
{
    if (seq > w->top)
        return seq > 0 && seq <= SEQ_MAX;
    if (seq == 0 || w->top - seq >= w->size)
        return 0;  /* seq 0 is never sent (RFC 4303 3.3.3); too old to tell */
    return !((w->blocks[(seq >> 6) % (unsigned long long)w->nblocks] >> (seq & 63)) & 1);
}

/* Mark seq as received: only after its ICV was verified. */
static void window_update(Window *w, unsigned long long seq)
{
    unsigned long long nb = (unsigned long long)w->nblocks;
    if (seq > w->top) {
        unsigned long long cur = w->top >> 6, new = seq >> 6;
        if (new != cur) {
            if (new - cur >= nb)
                memset(w->blocks, 0, sizeof(uint64_t) * nb);
            else
                for (unsigned long long i = cur + 1; i <= new; i++)
                    w->blocks[i % nb] = 0;
        }
        w->top = seq;
    } else if (seq == 0 || w->top - seq >= w->size) {
        return;
    }
    w->blocks[(seq >> 6) % nb] |= (uint64_t)1 << (seq & 63);
}

static int Window_init(Window *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", NULL};
    long long size = 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|L", kwlist, &size))
        return -1;
    if (size < 64 || size % 64 || size > (1LL << 20)) {
        PyErr_SetString(PyExc_ValueError, "replay window size must be a positive multiple of 64");
        return -1;
    }
    PyMem_Free(self->blocks);
    self->size = (unsigned long long)size;
    self->nblocks = (Py_ssize_t)(size / 64 + 1);
    self->blocks = PyMem_Calloc((size_t)self->nblocks, sizeof(uint64_t));
    self->top = 0;
    if (self->blocks == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Window_dealloc(Window *self)
{
    PyMem_Free(self->blocks);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A sequence number from Python: 0..2^32-1 (ValueError otherwise). */
static int seq_arg(PyObject *arg, unsigned long long *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (v > SEQ_MAX) {
        PyErr_SetString(PyExc_ValueError, "a sequence number is 32 bits");
        return -1;
    }
    *out = v;
    return 0;
}

static int window_ready(const Window *self)
{
    if (self->blocks == NULL) {
        PyErr_SetString(PyExc_ValueError, "Window is not initialised");
        return 0;
    }
    return 1;
}

static PyObject *Window_check(Window *self, PyObject *arg)
{
    unsigned long long seq;
    if (!window_ready(self) || seq_arg(arg, &seq) < 0)
        return NULL;
    return PyBool_FromLong(window_check(self, seq));
}

static PyObject *Window_update(Window *self, PyObject *arg)
{
    unsigned long long seq;
    if (!window_ready(self) || seq_arg(arg, &seq) < 0)
        return NULL;
    window_update(self, seq);
    Py_RETURN_NONE;
}

static PyObject *Window_check_and_update(Window *self, PyObject *arg)
{
    unsigned long long seq;
    if (!window_ready(self) || seq_arg(arg, &seq) < 0)
        return NULL;
    if (!window_check(self, seq))
        Py_RETURN_FALSE;
    window_update(self, seq);
    Py_RETURN_TRUE;
}

static PyObject *Window_get_top(Window *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->top);
}

static int Window_set_top(Window *self, PyObject *value, void *closure)
{
    unsigned long long top;
    (void)closure;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "top cannot be deleted");
        return -1;
    }
    if (seq_arg(value, &top) < 0)
        return -1;
    self->top = top;
    return 0;
}

static PyObject *Window_get_size(Window *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->size);
}

static PyMethodDef Window_methods[] = {
    {"check", (PyCFunction)Window_check, METH_O, "check(seq) -> bool: new and not too old"},
    {"update", (PyCFunction)Window_update, METH_O, "update(seq): mark seq (authentic) received"},
    {"check_and_update", (PyCFunction)Window_check_and_update, METH_O,
     "check_and_update(seq) -> bool"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Window_getset[] = {
    {"top", (getter)Window_get_top, (setter)Window_set_top,
     "highest sequence number accepted so far (0: none yet)", NULL},
    {"size", (getter)Window_get_size, NULL, "window size in packets", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WindowType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vpnhub.esp._espfast.Window",
    .tp_doc = "The anti-replay window of replay.ReplayWindow, in C.",
    .tp_basicsize = sizeof(Window),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Window_init,
    .tp_dealloc = (destructor)Window_dealloc,
    .tp_methods = Window_methods,
    .tp_getset = Window_getset,
};

typedef struct {
    PyObject_HEAD
    int gcm;            /* 1: AES-GCM-16, 0: AES-CBC + HMAC */
    int encrypt;        /* direction: 1 outbound (encap), 0 inbound (decap) */
    int strict_padding; /* padding bytes must be 1, 2, 3, ... (RFC 4303 2.4) */
    unsigned int icv_len;
    unsigned char spi[4];
    unsigned char salt[GCM_SALT];
    EVP_CIPHER_CTX *cipher;
    EVP_MD_CTX *ipad;   /* HMAC inner state after K xor ipad */
    EVP_MD_CTX *opad;   /* HMAC outer state after K xor opad */
    EVP_MD_CTX *work;
} Codec;

static PyObject *ssl_error(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "OpenSSL: %s failed", what);
    return NULL;
}

static const EVP_CIPHER *pick_cipher(int gcm, Py_ssize_t key_len)
{
    switch (key_len) {
    case 16: return gcm ? EVP_aes_128_gcm() : EVP_aes_128_cbc();
    case 24: return gcm ? EVP_aes_192_gcm() : EVP_aes_192_cbc();
    case 32: return gcm ? EVP_aes_256_gcm() : EVP_aes_256_cbc();
    default: return NULL;
    }
}

/* Keyed HMAC states (RFC 2104 2): hash a key longer than the block first. */
static int hmac_setup(Codec *self, const EVP_MD *md, const unsigned char *key, Py_ssize_t key_len)
{
    unsigned char k[256];
    int block = EVP_MD_get_block_size(md);
    unsigned int hashed = 0;
    int ok = 0;

    if (block <= 0 || block > (int)sizeof(k))
        return 0;
    memset(k, 0, sizeof(k));
    if (key_len > block) {
        if (!EVP_Digest(key, (size_t)key_len, k, &hashed, md, NULL))
            return 0;
    } else {
        memcpy(k, key, (size_t)key_len);
    }
    self->ipad = EVP_MD_CTX_new();
    self->opad = EVP_MD_CTX_new();
    self->work = EVP_MD_CTX_new();
    if (self->ipad == NULL || self->opad == NULL || self->work == NULL)
        goto out;
    for (int i = 0; i < block; i++)
        k[i] ^= 0x36;
    if (!EVP_DigestInit_ex(self->ipad, md, NULL) || !EVP_DigestUpdate(self->ipad, k, (size_t)block))
        goto out;
    for (int i = 0; i < block; i++)
        k[i] ^= 0x36 ^ 0x5c;
    if (!EVP_DigestInit_ex(self->opad, md, NULL) || !EVP_DigestUpdate(self->opad, k, (size_t)block))
        goto out;
    ok = 1;
out:
    OPENSSL_cleanse(k, sizeof(k));
    return ok;
}

/* HMAC of data[0:len] into mac (full digest length). */
static int hmac_run(Codec *self, const unsigned char *data, size_t len, unsigned char *mac)
{
    unsigned char inner[EVP_MAX_MD_SIZE];
    unsigned int n = 0, m = 0;

    return EVP_MD_CTX_copy_ex(self->work, self->ipad)
        && EVP_DigestUpdate(self->work, data, len)
        && EVP_DigestFinal_ex(self->work, inner, &n)
        && EVP_MD_CTX_copy_ex(self->work, self->opad)
        && EVP_DigestUpdate(self->work, inner, n)
        && EVP_DigestFinal_ex(self->work, mac, &m);
}

static void Codec_dealloc(Codec *self)
{
    EVP_CIPHER_CTX_free(self->cipher);
    EVP_MD_CTX_free(self->ipad);
    EVP_MD_CTX_free(self->opad);
    EVP_MD_CTX_free(self->work);
    OPENSSL_cleanse(self->salt, sizeof(self->salt));
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Codec(spi, transform, enc_key, digest, integ_key, icv_len, encrypt, strict_padding)
 * digest: OpenSSL digest name ("SHA1", "SHA256", ...) for CBC, None for GCM;
 * enc_key for GCM is the AES key followed by the 4-byte salt (RFC 4106 8.1). */
static int Codec_init(Codec *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"spi", "transform", "enc_key", "digest", "integ_key", "icv_len",
                             "encrypt", "strict_padding", NULL};
    unsigned long spi;
    int transform, encrypt, strict;
    unsigned int icv_len;
    const char *digest = NULL;
    const unsigned char *enc_key, *integ_key;
    Py_ssize_t enc_len, integ_len;
    const EVP_CIPHER *cipher;

    if (self->cipher != NULL || self->ipad != NULL) {
        PyErr_SetString(PyExc_TypeError, "Codec is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "kiy#zy#Ipp", kwlist, &spi, &transform,
                                     &enc_key, &enc_len, &digest, &integ_key, &integ_len,
                                     &icv_len, &encrypt, &strict))
        return -1;
    if (spi > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "SPI is 32 bits");
        return -1;
    }
    self->gcm = transform == ESP_AES_GCM_16;
    if (!self->gcm && transform != ESP_AES_CBC) {
        PyErr_Format(PyExc_ValueError, "ESP transform %d has no C codec", transform);
        return -1;
    }
    if (self->gcm) {
        if (digest != NULL || icv_len != GCM_TAG || enc_len < GCM_SALT) {
            PyErr_SetString(PyExc_ValueError, "AES-GCM-16: no HMAC, 16-byte ICV, key || salt");
            return -1;
        }
        enc_len -= GCM_SALT;
        memcpy(self->salt, enc_key + enc_len, GCM_SALT);
    }
    cipher = pick_cipher(self->gcm, enc_len);
    if (cipher == NULL) {
        PyErr_SetString(PyExc_ValueError, "AES key must be 16, 24 or 32 bytes");
        return -1;
    }
    self->spi[0] = (unsigned char)(spi >> 24);
    self->spi[1] = (unsigned char)(spi >> 16);
    self->spi[2] = (unsigned char)(spi >> 8);
    self->spi[3] = (unsigned char)spi;
    self->encrypt = encrypt;
    self->strict_padding = strict;
    self->icv_len = icv_len;
    if (!self->gcm) {
        const EVP_MD *md = digest ? EVP_get_digestbyname(digest) : NULL;
        if (md == NULL || icv_len == 0 || icv_len > (unsigned int)EVP_MD_get_size(md)) {
            PyErr_SetString(PyExc_ValueError, "AES-CBC needs a known HMAC digest and ICV length");
            return -1;
        }
        if (!hmac_setup(self, md, integ_key, integ_len)) {
            ssl_error("HMAC key setup");
            return -1;
        }
    }
    self->cipher = EVP_CIPHER_CTX_new();
    if (self->cipher == NULL
        || !EVP_CipherInit_ex(self->cipher, cipher, NULL, enc_key, NULL, encrypt)
        || !EVP_CIPHER_CTX_set_padding(self->cipher, 0)) {
        ssl_error("cipher key setup");
        return -1;
    }
    return 0;
}

/* Set the per-packet IV (CBC) or nonce (GCM) on the keyed context: no new key schedule. */
static int set_iv(Codec *self, const unsigned char *iv)
{
    return EVP_CipherInit_ex(self->cipher, NULL, NULL, NULL, iv, -1);
}

/* Whole-buffer update: the input is a multiple of the block size (or GCM). */
static int run_cipher(Codec *self, unsigned char *out, const unsigned char *in, size_t len)
{
    int n = 0;
    return EVP_CipherUpdate(self->cipher, out, &n, in, (int)len) && (size_t)n == len;
}

/* inner || trailer through the cipher into out; CBC keeps a partial block of inner
 * back until the trailer completes it, hence the running offset. */
static int encrypt_payload(Codec *self, unsigned char *out, const Py_buffer *inner,
                           const unsigned char *trailer, size_t trailer_len)
{
    int a = 0, b = 0;
    if (inner->len > 0 && !EVP_CipherUpdate(self->cipher, out, &a, inner->buf, (int)inner->len))
        return 0;
    return EVP_CipherUpdate(self->cipher, out + a, &b, trailer, (int)trailer_len)
        && (size_t)a + (size_t)b == (size_t)inner->len + trailer_len;
}

/* encap(inner, next_header, seq, iv) -> ESP packet (RFC 4303 2).
 * iv: CBC: 16 unpredictable bytes, used as the IV (RFC 3602 3); GCM: the SA's 4-byte
 * IV prefix, followed in the packet by the 32-bit sequence number (RFC 4106 3.1). */
static PyObject *Codec_encap(Codec *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer inner;
    long next_header;
    unsigned long seq;
    Py_ssize_t iv_len;
    const char *iv;
    unsigned char trailer[MAX_PAD + 2], mac[EVP_MAX_MD_SIZE];
    size_t align, pad, body, ivn, total;
    unsigned char *p;
    PyObject *out;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "encap(inner, next_header, seq, iv)");
        return NULL;
    }
    if (self->cipher == NULL || !self->encrypt) {
        PyErr_SetString(PyExc_ValueError, "not an initialised outbound Codec: decap only");
        return NULL;
    }
    next_header = PyLong_AsLong(args[1]);
    if (next_header == -1 && PyErr_Occurred())
        return NULL;
    seq = PyLong_AsUnsignedLong(args[2]);
    if (seq == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (next_header < 0 || next_header > 255 || seq > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "next header is a byte, seq 32 bits");
        return NULL;
    }
    if (PyBytes_AsStringAndSize(args[3], (char **)&iv, &iv_len) < 0)
        return NULL;
    ivn = self->gcm ? GCM_IV : CBC_BLOCK;
    if ((size_t)iv_len != (self->gcm ? GCM_SALT : CBC_BLOCK)) {
        PyErr_SetString(PyExc_ValueError, "iv: 16 bytes (CBC) or the 4-byte prefix (GCM)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &inner, PyBUF_SIMPLE) < 0)
        return NULL;
    /* Pad so that payload + pad + 2 fills whole blocks (4 bytes for GCM), pad 1, 2, 3... */
    align = self->gcm ? 4 : CBC_BLOCK;
    pad = (align - ((size_t)inner.len + 2) % align) % align;
    body = (size_t)inner.len + pad + 2;
    total = 8 + ivn + body + self->icv_len;
    if (total > (size_t)PY_SSIZE_T_MAX || body > INT_MAX) {
        PyBuffer_Release(&inner);
        PyErr_SetString(PyExc_OverflowError, "inner packet too large");
        return NULL;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out == NULL) {
        PyBuffer_Release(&inner);
        return NULL;
    }
    p = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(p, self->spi, 4);
    p[4] = (unsigned char)(seq >> 24);
    p[5] = (unsigned char)(seq >> 16);
    p[6] = (unsigned char)(seq >> 8);
    p[7] = (unsigned char)seq;
    if (self->gcm) {
        memcpy(p + 8, iv, GCM_SALT);
        memcpy(p + 12, p + 4, 4);
    } else {
        memcpy(p + 8, iv, CBC_BLOCK);
    }
    for (size_t i = 0; i < pad; i++)
        trailer[i] = (unsigned char)(i + 1);
    trailer[pad] = (unsigned char)pad;
    trailer[pad + 1] = (unsigned char)next_header;

    unsigned char *ct = p + 8 + ivn;
    int ok;
    if (self->gcm) {
        unsigned char nonce[GCM_SALT + GCM_IV];
        int n = 0;
        memcpy(nonce, self->salt, GCM_SALT);
        memcpy(nonce + GCM_SALT, p + 8, GCM_IV);
        /* AAD = SPI || seq (RFC 4106 5, no ESN); ICV = the 16-byte tag. */
        ok = set_iv(self, nonce)
            && EVP_CipherUpdate(self->cipher, NULL, &n, p, 8)
            && encrypt_payload(self, ct, &inner, trailer, pad + 2)
            && EVP_CipherFinal_ex(self->cipher, mac, &n)
            && EVP_CIPHER_CTX_ctrl(self->cipher, EVP_CTRL_AEAD_GET_TAG, GCM_TAG, ct + body);
        OPENSSL_cleanse(nonce, sizeof(nonce));
    } else {
        /* Encrypt-then-MAC: the ICV covers SPI, seq, IV and ciphertext (RFC 4303 3.3.2). */
        ok = set_iv(self, p + 8)
            && encrypt_payload(self, ct, &inner, trailer, pad + 2)
            && hmac_run(self, p, 8 + ivn + body, mac);
        if (ok)
            memcpy(ct + body, mac, self->icv_len);
    }
    PyBuffer_Release(&inner);
    if (!ok) {
        Py_DECREF(out);
        return ssl_error("ESP encryption");
    }
    return out;
}

/* Check the trailer of plain[0:len] (RFC 4303 2.4) and return the inner length, or -1. */
static Py_ssize_t strip_trailer(Codec *self, const unsigned char *plain, size_t len)
{
    size_t pad = plain[len - 2];
    if (pad + 2 > len)
        return -1;
    if (self->strict_padding) {
        const unsigned char *q = plain + len - 2 - pad;
        for (size_t i = 0; i < pad; i++)
            if (q[i] != (unsigned char)(i + 1))
                return -1;
    }
    return (Py_ssize_t)(len - 2 - pad);
}

/* Smallest well-formed packet: header, IV, one block (GCM: 4 bytes), ICV; CBC
 * ciphertext must be whole blocks (sa.py's _min_len and alignment rule). */
static int decap_too_short(const Codec *self, size_t n)
{
    size_t icv = self->icv_len;
    return self->gcm ? n < 8 + GCM_IV + 4 + icv
                     : n < 8 + CBC_BLOCK + CBC_BLOCK + icv || (n - 8 - icv) % CBC_BLOCK;
}

static unsigned long seq_of(const unsigned char *p)
{
    return ((unsigned long)p[4] << 24) | ((unsigned long)p[5] << 16)
        | ((unsigned long)p[6] << 8) | p[7];
}

/* ICV / tag, decryption and trailer of p[0:n] (long enough: decap_too_short); the
 * replay window is the caller's.  0 with *out the inner packet and *nh its next
 * header; ERR_AUTH or ERR_PADDING; -1 with a Python error set. */
static int decap_body(Codec *self, const unsigned char *p, size_t n, PyObject **out, int *nh)
{
    size_t ct_len, icv = self->icv_len;
    const unsigned char *ct;
    PyObject *plain;
    unsigned char *q;
    Py_ssize_t end;

    ct = p + 8 + (self->gcm ? GCM_IV : CBC_BLOCK);
    ct_len = n - icv - (size_t)(ct - p);
    if (ct_len > INT_MAX)
        return ERR_SHORT;  /* not reachable with UDP-sized datagrams */
    plain = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)ct_len);
    if (plain == NULL)
        return -1;
    q = (unsigned char *)PyBytes_AS_STRING(plain);
    if (self->gcm) {
        unsigned char nonce[GCM_SALT + GCM_IV], scratch[16];
        int m = 0, ok;
        memcpy(nonce, self->salt, GCM_SALT);
        memcpy(nonce + GCM_SALT, p + 8, GCM_IV);
        if (!set_iv(self, nonce)
            || !EVP_CipherUpdate(self->cipher, NULL, &m, p, 8)
            || !run_cipher(self, q, ct, ct_len)
            || !EVP_CIPHER_CTX_ctrl(self->cipher, EVP_CTRL_AEAD_SET_TAG, GCM_TAG,
                                    (void *)(p + n - GCM_TAG))) {
            OPENSSL_cleanse(nonce, sizeof(nonce));
            Py_DECREF(plain);
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL: ESP decryption failed");
            return -1;
        }
        OPENSSL_cleanse(nonce, sizeof(nonce));
        /* The plaintext above is not looked at unless the tag verifies. */
        ok = EVP_CipherFinal_ex(self->cipher, scratch, &m) > 0;
        if (!ok) {
            Py_DECREF(plain);
            return ERR_AUTH;
        }
    } else {
        unsigned char mac[EVP_MAX_MD_SIZE];
        /* Verify before decrypting (RFC 4303 3.4.4.1), in constant time. */
        if (!hmac_run(self, p, n - icv, mac)) {
            Py_DECREF(plain);
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL: HMAC failed");
            return -1;
        }
        if (CRYPTO_memcmp(mac, p + n - icv, icv) != 0) {
            Py_DECREF(plain);
            return ERR_AUTH;
        }
        if (!set_iv(self, p + 8) || !run_cipher(self, q, ct, ct_len)) {
            Py_DECREF(plain);
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL: ESP decryption failed");
            return -1;
        }
    }
    end = strip_trailer(self, q, ct_len);
    if (end < 0) {
        Py_DECREF(plain);
        return ERR_PADDING;
    }
    *nh = q[ct_len - 1];
    /* Shrink in place to the inner packet: one allocation, no second copy. */
    if (_PyBytes_Resize(&plain, end) < 0)
        return -1;
    *out = plain;
    return 0;
}

static int inbound_ready(const Codec *self)
{
    if (self->cipher == NULL || self->encrypt) {
        PyErr_SetString(PyExc_ValueError, "not an initialised inbound Codec: encap only");
        return 0;
    }
    return 1;
}

/* decap(esp, top) -> (inner, next_header, seq) or an int ERR_* code.
 * top: the replay window's top; seq <= top returns ERR_REPLAY_CHECK before any
 * crypto (RFC 4303 3.4.3: check the window first); -1 skips that test. */
static PyObject *Codec_decap(Codec *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer esp;
    long long top;
    unsigned long seq;
    PyObject *plain = NULL, *result;
    int code, nh = 0;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decap(esp, top)");
        return NULL;
    }
    if (!inbound_ready(self))
        return NULL;
    top = PyLong_AsLongLong(args[1]);
    if (top == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &esp, PyBUF_SIMPLE) < 0)
        return NULL;
    if (decap_too_short(self, (size_t)esp.len)) {
        code = ERR_SHORT;
    } else {
        seq = seq_of(esp.buf);
        code = (long long)seq <= top ? ERR_REPLAY_CHECK
                                     : decap_body(self, esp.buf, (size_t)esp.len, &plain, &nh);
    }
    PyBuffer_Release(&esp);
    if (code < 0)
        return NULL;
    if (code > 0)
        return PyLong_FromLong(code);
    result = Py_BuildValue("(NiN)", plain, nh, PyLong_FromUnsignedLong(seq));
    return result;
}

/* The checks of receive() on one packet: 0 with *out the inner packet, a
 * positive ERR_* code (ERR_SPOOFED / ERR_BAD_INNER with *out the decrypted
 * packet, which the SA counts as received), or -1 with a Python error set. */
static int receive_one(Codec *self, Window *w, const unsigned char *map,
                       const unsigned char *allowed, PyObject *packet, PyObject **out)
{
    Py_buffer esp;
    unsigned long long seq;
    PyObject *plain = NULL;
    int code, nh = 0;

    *out = NULL;
    if (PyObject_GetBuffer(packet, &esp, PyBUF_SIMPLE) < 0)
        return -1;
    if (decap_too_short(self, (size_t)esp.len)) {
        code = ERR_SHORT;
    } else {
        seq = seq_of(esp.buf);
        if (!window_check(w, seq)) {
            code = ERR_REPLAY;
        } else {
            code = decap_body(self, esp.buf, (size_t)esp.len, &plain, &nh);
            if (code == 0 || code == ERR_PADDING)
                window_update(w, seq);  /* authentic */
        }
    }
    PyBuffer_Release(&esp);
    if (code != 0)
        return code;
    if (!map[nh]) {
        Py_DECREF(plain);
        return nh == 59 ? ERR_DUMMY : ERR_NEXT_HEADER;
    }
    *out = plain;
    if (allowed != NULL) {
        const unsigned char *q = (const unsigned char *)PyBytes_AS_STRING(plain);
        Py_ssize_t m = PyBytes_GET_SIZE(plain);
        /* The version first: an IPv6 packet whose bytes 12-15 (inside its source
         * address) equal the assigned IPv4 address is not IPv4 from it. */
        if (m < 20 || q[0] >> 4 != 4)
            return ERR_BAD_INNER;
        if (memcmp(q + 12, allowed, 4) != 0)
            return ERR_SPOOFED;
    }
    return 0;
}

#define RECEIVE_USAGE "window: Window, next_headers: 256 bytes, allowed_src: 4 bytes | None"

/* The window, next-header map and source of receive() / receive_run() args. */
static int receive_args(Codec *self, PyObject *const *args, Window **w,
                        const unsigned char **map, const unsigned char **allowed)
{
    if (!PyObject_TypeCheck(args[0], &WindowType) || !PyBytes_Check(args[1])
        || PyBytes_GET_SIZE(args[1]) != 256
        || (args[2] != Py_None && (!PyBytes_Check(args[2]) || PyBytes_GET_SIZE(args[2]) != 4))) {
        PyErr_SetString(PyExc_TypeError, RECEIVE_USAGE);
        return 0;
    }
    if (!inbound_ready(self))
        return 0;
    *w = (Window *)args[0];
    if (!window_ready(*w))
        return 0;
    *map = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    *allowed = args[2] == Py_None ? NULL : (const unsigned char *)PyBytes_AS_STRING(args[2]);
    return 1;
}

/* receive(esp, window, next_headers, allowed_src) -> inner | code | (code, inner)
 * The whole inbound check of sa.py's EspSA._receive_py in one call, in its order:
 * length (ERR_SHORT), the window (ERR_REPLAY), ICV / tag (ERR_AUTH), the window
 * moves (the packet is authentic, RFC 4303 3.4.3), trailer (ERR_PADDING), next
 * header (next_headers: 256 bytes, non-zero where allowed; ERR_DUMMY for 59,
 * ERR_NEXT_HEADER), then the inner source (RFC 4301 5.2: allowed_src, 4 bytes, or
 * None): a decrypted packet that fails it comes back as (ERR_SPOOFED or
 * ERR_BAD_INNER, inner), since the SA counts it as received. */
static PyObject *Codec_receive(Codec *self, PyObject *const *args, Py_ssize_t nargs)
{
    Window *w;
    const unsigned char *map, *allowed;
    PyObject *inner;
    int code;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "receive(esp, " RECEIVE_USAGE ")");
        return NULL;
    }
    if (!receive_args(self, args + 1, &w, &map, &allowed))
        return NULL;
    code = receive_one(self, w, map, allowed, args[0], &inner);
    if (code < 0)
        return NULL;
    if (code == 0)
        return inner;
    if (inner != NULL)
        return Py_BuildValue("(iN)", code, inner);
    return PyLong_FromLong(code);
}

/* receive_run(batch, start, window, next_headers, allowed_src, spi, addr, limit, min_inner)
 *   -> (end, inners, received, received_bytes, drops, refused)
 * receive() on batch[start:] (items (esp, addr, ...), as a recvmmsg batch) while an
 * item is ESP of this SA (at least 8 bytes, its first 4 == spi) from `addr`, and
 * fewer than `limit` inner packets were taken: `inners` the good ones in order,
 * `end` the first item not taken; `received` / `received_bytes` the packets and
 * bytes the SA counts as received; `drops` the ERR_* code of each packet refused,
 * ERR_BAD_INNER too for a received inner packet shorter than `min_inner`;
 * `refused` the last decrypted inner packet refused (so its header can be named in
 * a debug line), or None. */
static PyObject *Codec_receive_run(Codec *self, PyObject *const *args, Py_ssize_t nargs)
{
    Window *w;
    const unsigned char *map, *allowed, *spi;
    PyObject *batch, *addr, *inners = NULL, *drops = NULL, *refused = NULL;
    Py_ssize_t i, n, limit, min_inner, received = 0;
    unsigned long long nbytes = 0;

    if (nargs != 9 || !PyList_Check(args[0]) || !PyBytes_Check(args[5])
        || PyBytes_GET_SIZE(args[5]) != 4) {
        PyErr_SetString(PyExc_TypeError, "receive_run(batch: list, start, " RECEIVE_USAGE
                        ", spi: 4 bytes, addr, limit, min_inner)");
        return NULL;
    }
    if (!receive_args(self, args + 2, &w, &map, &allowed))
        return NULL;
    batch = args[0];
    i = PyLong_AsSsize_t(args[1]);
    limit = PyLong_AsSsize_t(args[7]);
    min_inner = PyLong_AsSsize_t(args[8]);
    if ((i == -1 || limit == -1 || min_inner == -1) && PyErr_Occurred())
        return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "start must not be negative");
        return NULL;
    }
    spi = (const unsigned char *)PyBytes_AS_STRING(args[5]);
    addr = args[6];
    inners = PyList_New(0);
    drops = PyList_New(0);
    if (inners == NULL || drops == NULL)
        goto error;
    /* The list is the caller's: its length is read again at each step (no Python
     * code runs here, but nothing is assumed). */
    for (; i < (n = PyList_GET_SIZE(batch)) && PyList_GET_SIZE(inners) < limit; i++) {
        PyObject *item = PyList_GET_ITEM(batch, i), *esp, *inner;
        int code, same;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2)
            break;
        esp = PyTuple_GET_ITEM(item, 0);
        if (!PyBytes_Check(esp) || PyBytes_GET_SIZE(esp) < 8
            || memcmp(PyBytes_AS_STRING(esp), spi, 4) != 0)
            break;
        same = PyTuple_GET_ITEM(item, 1) == addr ? 1
             : PyObject_RichCompareBool(PyTuple_GET_ITEM(item, 1), addr, Py_EQ);
        if (same < 0)
            goto error;
        if (!same)
            break;
        Py_INCREF(item);  /* the comparison above may have run Python code */
        code = receive_one(self, w, map, allowed, esp, &inner);
        Py_DECREF(item);
        if (code < 0)
            goto error;
        if (inner != NULL) {
            received++;
            nbytes += (unsigned long long)PyBytes_GET_SIZE(inner);
            if (code == 0 && PyBytes_GET_SIZE(inner) < min_inner)
                code = ERR_BAD_INNER;  /* the TUN would refuse it */
            if (code == 0 && PyList_Append(inners, inner) < 0) {
                Py_DECREF(inner);
                goto error;
            }
            if (code != 0)
                Py_XSETREF(refused, inner);  /* takes the reference */
            else
                Py_DECREF(inner);
        }
        if (code != 0) {
            PyObject *c = PyLong_FromLong(code);
            if (c == NULL || PyList_Append(drops, c) < 0) {
                Py_XDECREF(c);
                goto error;
            }
            Py_DECREF(c);
        }
    }
    if (refused == NULL)
        refused = Py_NewRef(Py_None);
    return Py_BuildValue("(nNnKNN)", i, inners, received, nbytes, drops, refused);
error:
    Py_XDECREF(inners);
    Py_XDECREF(drops);
    Py_XDECREF(refused);
    return NULL;
}

static PyMethodDef Codec_methods[] = {
    {"encap", (PyCFunction)(void (*)(void))Codec_encap, METH_FASTCALL,
     "encap(inner, next_header, seq, iv) -> ESP packet"},
    {"decap", (PyCFunction)(void (*)(void))Codec_decap, METH_FASTCALL,
     "decap(esp, top) -> (inner, next_header, seq) or an int failure code"},
    {"receive", (PyCFunction)(void (*)(void))Codec_receive, METH_FASTCALL,
     "receive(esp, window, next_headers, allowed_src) -> inner, a failure code, or"
     " (code, inner)"},
    {"receive_run", (PyCFunction)(void (*)(void))Codec_receive_run, METH_FASTCALL,
     "receive_run(batch, start, window, next_headers, allowed_src, spi, addr, limit,"
     " min_inner) -> (end, inners, received, received_bytes, drops, refused)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CodecType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vpnhub.esp._espfast.Codec",
    .tp_doc = "One direction of an ESP SA: keyed OpenSSL contexts, one call per packet.",
    .tp_basicsize = sizeof(Codec),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Codec_init,
    .tp_dealloc = (destructor)Codec_dealloc,
    .tp_methods = Codec_methods,
};

static struct PyModuleDef espfast_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vpnhub.esp._espfast",
    .m_doc = "C twin of the per-packet ESP codec (vpnhub/esp/sa.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__espfast(void)
{
    PyObject *m;
    if (PyType_Ready(&CodecType) < 0 || PyType_Ready(&WindowType) < 0)
        return NULL;
    m = PyModule_Create(&espfast_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CodecType);
    Py_INCREF(&WindowType);
    if (PyModule_AddObject(m, "Codec", (PyObject *)&CodecType) < 0
        || PyModule_AddObject(m, "Window", (PyObject *)&WindowType) < 0
        || PyModule_AddIntConstant(m, "ERR_SHORT", ERR_SHORT) < 0
        || PyModule_AddIntConstant(m, "ERR_AUTH", ERR_AUTH) < 0
        || PyModule_AddIntConstant(m, "ERR_PADDING", ERR_PADDING) < 0
        || PyModule_AddIntConstant(m, "ERR_REPLAY_CHECK", ERR_REPLAY_CHECK) < 0
        || PyModule_AddIntConstant(m, "ERR_REPLAY", ERR_REPLAY) < 0
        || PyModule_AddIntConstant(m, "ERR_NEXT_HEADER", ERR_NEXT_HEADER) < 0
        || PyModule_AddIntConstant(m, "ERR_DUMMY", ERR_DUMMY) < 0
        || PyModule_AddIntConstant(m, "ERR_SPOOFED", ERR_SPOOFED) < 0
        || PyModule_AddIntConstant(m, "ERR_BAD_INNER", ERR_BAD_INNER) < 0) {
        Py_DECREF(&CodecType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
