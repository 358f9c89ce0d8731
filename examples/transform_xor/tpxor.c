/* tpxor: a complete third-party tunpump transform, built only against
 * tunpump.get_include() (tunpump.h). It is a demonstration, NOT security:
 * XOR with a repeating key hides nothing from anyone who looks.
 *
 * To the endpoint, every packet grows by an 8-byte header
 *     "TPX1" | key id (u16, big-endian) | payload length (u16, big-endian)
 * and its bytes are XORed with the key. From the endpoint, a datagram with
 * another magic, key id or length is dropped (counted by tunpump as
 * "transform"); a good one loses its header and is XORed back.
 *
 * Python:
 *     import tpxor
 *     pump = tunpump.Pump(dev, ep, transform=tpxor.XOR(b"key", key_id=1))
 *     pump.transform_control(tpxor.rekey(b"new key", key_id=2))  # every worker
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "tunpump.h"

#define XOR_MAX_KEY 64
#define XOR_HDR 8
static const uint8_t xor_magic[4] = { 'T', 'P', 'X', '1' };

/* The config blob in the capsule, and each worker's state. A control
 * message is the same struct: the new key. */
struct xor_key {
    uint16_t id;
    uint16_t len;
    uint8_t key[XOR_MAX_KEY];
};

static void xor_bytes(uint8_t *p, uint32_t n, const struct xor_key *k)
{
    for (uint32_t i = 0; i < n; i++)
        p[i] ^= k->key[i % k->len];
}

static int xor_create(const void *config, size_t config_len, int queue, int nqueues, void **state)
{
    struct xor_key *k;

    (void)queue;
    (void)nqueues;
    if (config_len != sizeof(struct xor_key))
        return -22;   /* -EINVAL */
    k = malloc(sizeof(*k));   /* once per worker at start: never per packet */
    if (!k)
        return -12;   /* -ENOMEM */
    memcpy(k, config, sizeof(*k));
    *state = k;
    return 0;
}

static void xor_destroy(void *state)
{
    free(state);
}

static void xor_out(const struct xor_key *k, struct tunpump_pkt *p)
{
    if (p->headroom < XOR_HDR) {
        p->outcome = TUNPUMP_DROP;
        return;
    }
    xor_bytes(p->data, p->len, k);
    p->data -= XOR_HDR;
    memcpy(p->data, xor_magic, 4);
    p->data[4] = (uint8_t)(k->id >> 8);
    p->data[5] = (uint8_t)k->id;
    p->data[6] = (uint8_t)(p->len >> 8);
    p->data[7] = (uint8_t)p->len;
    p->len += XOR_HDR;
}

static void xor_in(const struct xor_key *k, struct tunpump_pkt *p)
{
    const uint8_t *h = p->data;

    if (p->len < XOR_HDR || memcmp(h, xor_magic, 4) != 0 || ((h[4] << 8) | h[5]) != k->id ||
        ((uint32_t)(h[6] << 8) | h[7]) != p->len - XOR_HDR) {
        p->outcome = TUNPUMP_DROP;
        return;
    }
    p->data += XOR_HDR;
    p->len -= XOR_HDR;
    xor_bytes(p->data, p->len, k);
}

static void xor_batch(void *state, enum tunpump_dir dir, struct tunpump_pkt *pkts, unsigned n)
{
    const struct xor_key *k = state;

    for (unsigned i = 0; i < n; i++) {
        if (dir == TUNPUMP_DIR_TO_ENDPOINT)
            xor_out(k, &pkts[i]);
        else
            xor_in(k, &pkts[i]);
    }
}

/* A new key, installed between two batches on this worker's thread. */
static void xor_control(void *state, const uint8_t *msg, size_t len)
{
    struct xor_key k;

    if (len != sizeof(k))
        return;
    memcpy(&k, msg, sizeof(k));
    if (k.len >= 1 && k.len <= XOR_MAX_KEY)
        memcpy(state, &k, sizeof(k));
}

static const struct tunpump_transform_ops xor_ops = {
    .abi = TUNPUMP_TRANSFORM_ABI,
    .flags = TUNPUMP_NEEDS_SEGMENTS,   /* wire-size segments in, coalescing after */
    .name = "xor",
    .create = xor_create,
    .destroy = xor_destroy,
    .batch = xor_batch,
    .control = xor_control,
};

/* ---- Python side ------------------------------------------------------------- */

static int xor_parse(PyObject *args, PyObject *kw, struct xor_key *k)
{
    static char *names[] = { "key", "key_id", NULL };
    Py_buffer key;
    int id = 1;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|i", names, &key, &id))
        return -1;
    if (key.len < 1 || key.len > XOR_MAX_KEY || id < 0 || id > 0xffff) {
        PyErr_Format(PyExc_ValueError, "key: 1 to %d bytes (got %zd), key_id: 0 to 65535 (got %d)",
                     XOR_MAX_KEY, key.len, id);
        PyBuffer_Release(&key);
        return -1;
    }
    memset(k, 0, sizeof(*k));
    k->id = (uint16_t)id;
    k->len = (uint16_t)key.len;
    memcpy(k->key, key.buf, (size_t)key.len);
    PyBuffer_Release(&key);
    return 0;
}

static void xor_capsule_free(PyObject *capsule)
{
    free(PyCapsule_GetPointer(capsule, TUNPUMP_TRANSFORM_CAPSULE));
}

/* XOR(key, key_id=1): the capsule tunpump.Pump(transform=...) takes. */
static PyObject *xor_new(PyObject *self, PyObject *args, PyObject *kw)
{
    struct tunpump_transform *t;
    struct xor_key *k;
    PyObject *cap;

    (void)self;
    t = malloc(sizeof(*t) + sizeof(*k));
    if (!t)
        return PyErr_NoMemory();
    k = (struct xor_key *)(t + 1);
    if (xor_parse(args, kw, k) < 0) {
        free(t);
        return NULL;
    }
    t->ops = &xor_ops;
    t->config = k;
    t->config_len = sizeof(*k);
    cap = PyCapsule_New(t, TUNPUMP_TRANSFORM_CAPSULE, xor_capsule_free);
    if (!cap)
        free(t);
    return cap;
}

/* rekey(key, key_id): the control message that installs a new key. */
static PyObject *xor_rekey(PyObject *self, PyObject *args, PyObject *kw)
{
    struct xor_key k;

    (void)self;
    if (xor_parse(args, kw, &k) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)&k, sizeof(k));
}

static PyMethodDef methods[] = {
    { "XOR", (PyCFunction)(void (*)(void))xor_new, METH_VARARGS | METH_KEYWORDS,
      "XOR(key, key_id=1): a tunpump transform capsule" },
    { "rekey", (PyCFunction)(void (*)(void))xor_rekey, METH_VARARGS | METH_KEYWORDS,
      "rekey(key, key_id): a message for Pump.transform_control" },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tpxor", "An example tunpump transform (XOR; not security).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_tpxor(void)
{
    PyObject *m = PyModule_Create(&module);

    if (m && (PyModule_AddIntConstant(m, "HEADER", XOR_HDR) < 0 ||
              PyModule_AddIntConstant(m, "MAX_KEY", XOR_MAX_KEY) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
