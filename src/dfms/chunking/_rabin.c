/*
 * dfms.chunking._rabin: Rabin-fingerprint content-defined chunking.
 *
 * Chunk boundaries are part of DFMS's on-disk identity (DESIGN.md invariant 5): the same bytes and
 * the same (min, avg, max) must give the same cut points forever, on every machine.  Everything
 * here is therefore fixed:
 *
 *   - ONE polynomial, POLYNOMIAL = 0x3DA3358B4DC173, an irreducible polynomial of degree 53 over
 *     GF(2) (the one restic's chunker made well known).  The unit tests re-check irreducibility.
 *   - A 64-byte rolling window.  The fingerprint at byte position p is
 *         fp(p) = (b[p-63] x^504 + b[p-62] x^496 + ... + b[p]) mod POLYNOMIAL
 *     i.e. a pure function of the 64 bytes ending at p (never of anything earlier).
 *   - The lookup tables are computed once, at module init, from that constant; never random.
 *
 * Cutting, for a chunk starting at offset s (the first chunk starts at 0, each next one where the
 * previous ended):
 *   - the first min_size - 64 bytes are skipped (never fingerprinted);
 *   - for n = min_size .. max_size (the chunk length if cut after byte s+n-1), cut at the first n
 *     with (fp(s+n-1) & mask) == 0, mask = 2^floor(log2(avg_size)) - 1;
 *   - no such n: forced cut at n = max_size.
 * The expected chunk length is therefore about min_size + 2^floor(log2(avg_size)) (bounded by
 * max_size), the same "avg + min" shape as FastCDC's cut-point skipping.
 *
 * find_cuts(buf, min_size, avg_size, max_size, final) returns the lengths of the consecutive chunks
 * that start at buf[0].  A chunk whose end is not yet decided (no cut found and fewer than max_size
 * bytes left) is returned only when final is true; otherwise the caller keeps those bytes and calls
 * again with more data appended.
 *
 * Speed: the fingerprint recurrence is one dependent chain (shift, table load, xor) per byte.  To
 * use the CPU's parallel execution units, the scan runs LANES independent chains over LANES
 * adjacent blocks at once (each block's chain is warmed up on the 64 bytes before it, which gives
 * exactly the same fp values because fp depends only on the window).  On the first hit in any lane
 * the group is resolved by a plain single-chain scan, so the cut points are identical to the
 * straightforward definition above; the unit tests compare against a slow reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define POLYNOMIAL UINT64_C(0x3DA3358B4DC173)
#define POL_DEGREE 53
#define POL_SHIFT (POL_DEGREE - 8)
#define WINDOW_SIZE 64

#define MIN_SIZE_LOWER 64
#define LANES 4
#define LANE_BLOCK 4096

/* mod_table[t] = ((t * x^53) mod P) | (t * x^53): XOR-ing it into a value whose bits 53..60 are t
 * clears those bits and adds their remainder, i.e. reduces a 61-bit value modulo P in one step. */
static uint64_t mod_table[256];
/* out_table[b] = (b * x^(8 * WINDOW_SIZE)) mod P: removes byte b once it is 64 bytes + 1 behind. */
static uint64_t out_table[256];

static int
pol_deg(uint64_t x)
{
    int d = -1;
    while (x) {
        d++;
        x >>= 1;
    }
    return d;
}

static uint64_t
pol_mod(uint64_t x, uint64_t p)
{
    int dp = pol_deg(p);
    int dx;
    while ((dx = pol_deg(x)) >= dp) {
        x ^= p << (dx - dp);
    }
    return x;
}

static void
init_tables(void)
{
    for (uint64_t t = 0; t < 256; t++) {
        mod_table[t] = pol_mod(t << POL_DEGREE, POLYNOMIAL) | (t << POL_DEGREE);
    }
    for (uint64_t b = 0; b < 256; b++) {
        /* b * x^(8*64) mod P, computed by appending 64 zero bytes to b */
        uint64_t h = b;
        for (int i = 0; i < WINDOW_SIZE; i++) {
            h = pol_mod(h << 8, POLYNOMIAL);
        }
        out_table[b] = h;
    }
}

/* Append one byte to a reduced fingerprint: ((d * x^8) + b) mod P. */
static inline uint64_t
append_byte(uint64_t d, uint8_t b)
{
    return ((d << 8) | b) ^ mod_table[d >> POL_SHIFT];
}

/* Slide the window by one byte: append `in`, drop `out` (the byte 64 positions before `in`). */
static inline uint64_t
slide(uint64_t d, uint8_t out, uint8_t in)
{
    return (((d << 8) | in) ^ out_table[out]) ^ mod_table[d >> POL_SHIFT];
}

/* Fingerprint of the WINDOW_SIZE bytes starting at w. */
static inline uint64_t
window_fp(const uint8_t *w)
{
    uint64_t d = 0;
    for (int i = 0; i < WINDOW_SIZE; i++) {
        d = append_byte(d, w[i]);
    }
    return d;
}

/* Single chain: d is fp of the window ending at position start-1; test positions start..end-1.
 * Returns the first position p with (fp(p) & mask) == 0, or -1. */
static Py_ssize_t
scan_single(const uint8_t *p, Py_ssize_t start, Py_ssize_t end, uint64_t d, uint64_t mask)
{
    for (Py_ssize_t i = start; i < end; i++) {
        d = slide(d, p[i - WINDOW_SIZE], p[i]);
        if ((d & mask) == 0) {
            return i;
        }
    }
    return -1;
}

/* Find the first position p in [start, end) with (fp(p) & mask) == 0, or -1.
 * Bytes p[start - WINDOW_SIZE + 1 .. end - 1] must be readable; start < end. */
static Py_ssize_t
find_match(const uint8_t *p, Py_ssize_t start, Py_ssize_t end, uint64_t mask)
{
    /* d0 = fp of the window ending at start */
    uint64_t d0 = window_fp(p + start - WINDOW_SIZE + 1);
    if ((d0 & mask) == 0) {
        return start;
    }
    Py_ssize_t pos = start + 1;
    const Py_ssize_t group = (Py_ssize_t)LANES * LANE_BLOCK;

    while (end - pos >= group) {
        const uint8_t *q0 = p + pos;
        const uint8_t *q1 = q0 + LANE_BLOCK;
        const uint8_t *q2 = q1 + LANE_BLOCK;
        const uint8_t *q3 = q2 + LANE_BLOCK;
        uint64_t d1 = window_fp(q1 - WINDOW_SIZE);
        uint64_t d2 = window_fp(q2 - WINDOW_SIZE);
        uint64_t d3 = window_fp(q3 - WINDOW_SIZE);
        uint64_t start_d0 = d0;
        Py_ssize_t j;
        for (j = 0; j < LANE_BLOCK; j++) {
            d0 = slide(d0, q0[j - WINDOW_SIZE], q0[j]);
            d1 = slide(d1, q1[j - WINDOW_SIZE], q1[j]);
            d2 = slide(d2, q2[j - WINDOW_SIZE], q2[j]);
            d3 = slide(d3, q3[j - WINDOW_SIZE], q3[j]);
            /* (x - 1) has its top bit set iff x == 0, for x < 2^63 */
            uint64_t hit = ((d0 & mask) - 1) | ((d1 & mask) - 1) | ((d2 & mask) - 1) |
                           ((d3 & mask) - 1);
            if (hit >> 63) {
                break;
            }
        }
        if (j < LANE_BLOCK) {
            /* Some lane hit: resolve the whole group with one chain, from the group start. */
            return scan_single(p, pos, pos + group, start_d0, mask);
        }
        d0 = d3; /* lane 3 ended exactly where the next group's lane 0 starts */
        pos += group;
    }
    return scan_single(p, pos, end, d0, mask);
}

typedef struct {
    Py_ssize_t *items;
    Py_ssize_t len;
    Py_ssize_t cap;
} lengths_t;

static int
lengths_push(lengths_t *v, Py_ssize_t x)
{
    if (v->len == v->cap) {
        Py_ssize_t cap = v->cap ? v->cap * 2 : 64;
        Py_ssize_t *items = PyMem_RawRealloc(v->items, (size_t)cap * sizeof(Py_ssize_t));
        if (items == NULL) {
            return -1;
        }
        v->items = items;
        v->cap = cap;
    }
    v->items[v->len++] = x;
    return 0;
}

/* The cutting loop; runs without the GIL.  Returns -1 on allocation failure. */
static int
cut_all(const uint8_t *buf, Py_ssize_t len, Py_ssize_t min_size, Py_ssize_t max_size,
        uint64_t mask, int final, lengths_t *out)
{
    Py_ssize_t s = 0;
    while (s < len) {
        Py_ssize_t remaining = len - s;
        if (remaining < min_size) {
            break; /* too short to cut: the trailing piece */
        }
        Py_ssize_t limit = remaining < max_size ? remaining : max_size;
        /* positions (relative to s) min_size-1 .. limit-1 are cut candidates */
        Py_ssize_t hit = find_match(buf + s, min_size - 1, limit, mask);
        Py_ssize_t n;
        if (hit >= 0) {
            n = hit + 1;
        }
        else if (limit == max_size) {
            n = max_size;
        }
        else {
            break; /* undecided: ran into the end of the buffer */
        }
        if (lengths_push(out, n) < 0) {
            return -1;
        }
        s += n;
    }
    if (final && s < len) {
        if (lengths_push(out, len - s) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
mask_bits(Py_ssize_t avg_size)
{
    int bits = 0;
    while (((Py_ssize_t)1 << (bits + 1)) <= avg_size) {
        bits++;
    }
    return bits;
}

PyDoc_STRVAR(find_cuts_doc,
             "find_cuts(buf, min_size, avg_size, max_size, final)\n--\n\n"
             "Lengths of the consecutive content-defined chunks starting at buf[0].\n\n"
             "When final is false, a trailing chunk whose end is not yet decided is left out\n"
             "(the caller keeps those bytes); when true, the trailing bytes form the last chunk.\n"
             "Accepts any contiguous buffer; releases the GIL while scanning.");

static PyObject *
find_cuts(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"buf", "min_size", "avg_size", "max_size", "final", NULL};
    Py_buffer view;
    Py_ssize_t min_size, avg_size, max_size;
    int final = 0;
    (void)module;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*nnn|p:find_cuts", kwlist, &view, &min_size,
                                     &avg_size, &max_size, &final)) {
        return NULL;
    }
    if (min_size < MIN_SIZE_LOWER || avg_size <= min_size || max_size <= avg_size) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError,
                     "need %d <= min_size < avg_size < max_size, got min_size=%zd "
                     "avg_size=%zd max_size=%zd",
                     MIN_SIZE_LOWER, min_size, avg_size, max_size);
        return NULL;
    }

    uint64_t mask = (UINT64_C(1) << mask_bits(avg_size)) - 1;
    lengths_t lengths = {NULL, 0, 0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cut_all((const uint8_t *)view.buf, view.len, min_size, max_size, mask, final, &lengths);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (rc < 0) {
        PyMem_RawFree(lengths.items);
        return PyErr_NoMemory();
    }

    PyObject *result = PyList_New(lengths.len);
    if (result != NULL) {
        for (Py_ssize_t i = 0; i < lengths.len; i++) {
            PyObject *n = PyLong_FromSsize_t(lengths.items[i]);
            if (n == NULL) {
                Py_CLEAR(result);
                break;
            }
            PyList_SET_ITEM(result, i, n);
        }
    }
    PyMem_RawFree(lengths.items);
    return result;
}

PyDoc_STRVAR(fingerprint_doc,
             "fingerprint(buf)\n--\n\n"
             "The Rabin fingerprint of all of buf: the bytes read as a polynomial over GF(2),\n"
             "most significant byte first, modulo POLYNOMIAL.  For 64 bytes this is exactly the\n"
             "rolling-window value find_cuts tests at the window's last byte.");

static PyObject *
fingerprint(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    (void)module;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)view.buf;
    uint64_t d = 0;
    for (Py_ssize_t i = 0; i < view.len; i++) {
        d = append_byte(d, p[i]);
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(d);
}

static PyMethodDef rabin_methods[] = {
    {"find_cuts", (PyCFunction)(void (*)(void))find_cuts, METH_VARARGS | METH_KEYWORDS,
     find_cuts_doc},
    {"fingerprint", (PyCFunction)fingerprint, METH_O, fingerprint_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rabin_module = {
    PyModuleDef_HEAD_INIT,
    "_rabin",
    "Rabin fingerprint content-defined chunking (fixed polynomial, 64-byte window).",
    -1,
    rabin_methods,
};

PyMODINIT_FUNC
PyInit__rabin(void)
{
    init_tables();
    PyObject *m = PyModule_Create(&rabin_module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *pol = PyLong_FromUnsignedLongLong(POLYNOMIAL);
    int rc = pol == NULL ? -1 : PyModule_AddObjectRef(m, "POLYNOMIAL", pol);
    Py_XDECREF(pol);
    if (rc < 0 ||
        PyModule_AddIntConstant(m, "POLYNOMIAL_DEGREE", POL_DEGREE) < 0 ||
        PyModule_AddIntConstant(m, "WINDOW_SIZE", WINDOW_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "MIN_SIZE_LOWER_BOUND", MIN_SIZE_LOWER) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
