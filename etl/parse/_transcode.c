/* Two-byte CJK text (GB18030/GBK, Big5, EUC-KR, Shift_JIS, EUC-JP) straight to UTF-8 bytes.
 *
 * Why: lexbor parses UTF-8. Decoding a GBK page into a Python str and letting selectolax encode it back
 * costs several times the parse's own share for a page that is mostly ASCII markup, because CPython's CJK
 * codecs handle every ASCII byte through their generic per-character loop. Here ASCII is copied eight bytes
 * at a time and each two-byte character is one lookup in a table the caller built from Python's own codec
 * (etl/parse/transcode.py), so the output is byte for byte what `body.decode(enc).encode("utf-8")` gives.
 * Anything the table does not cover (a four-byte GB18030 sequence, a byte that is no character, a lead byte
 * at the very end) returns None: the caller then decodes with Python's codec as before.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TABLE_ENTRIES (128 * 256) /* lead byte 0x80..0xFF x trail byte 0x00..0xFF */
#define HIGH_BITS 0x8080808080808080ULL

static PyObject *
to_utf8(PyObject *self, PyObject *args)
{
    Py_buffer body, table;
    if (!PyArg_ParseTuple(args, "y*y*", &body, &table))
        return NULL;
    PyObject *result = NULL;
    if (table.len != TABLE_ENTRIES * (Py_ssize_t)sizeof(uint16_t)) {
        PyErr_SetString(PyExc_ValueError, "table must hold 32768 uint16 code points");
        goto done;
    }
    const unsigned char *in = (const unsigned char *)body.buf;
    const Py_ssize_t n = body.len;
    if (n > (PY_SSIZE_T_MAX - 1) / 3 * 2) {
        PyErr_SetString(PyExc_OverflowError, "body too large");
        goto done;
    }
    /* every input byte gives at most 1.5 output bytes: ASCII 1 -> 1, a pair 2 -> at most 3 */
    PyObject *out = PyBytes_FromStringAndSize(NULL, n + n / 2 + 1);
    if (out == NULL)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    const uint16_t *tab = (const uint16_t *)table.buf;
    Py_ssize_t i = 0, j = 0;
    int covered = 1;
    Py_BEGIN_ALLOW_THREADS
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t word;
            memcpy(&word, in + i, 8);
            if ((word & HIGH_BITS) == 0) {
                memcpy(o + j, &word, 8);
                i += 8;
                j += 8;
                continue;
            }
        }
        const unsigned char c = in[i];
        if (c < 0x80) {
            o[j++] = c;
            i++;
            continue;
        }
        if (i + 1 >= n) {
            covered = 0;
            break;
        }
        const uint16_t cp = tab[((Py_ssize_t)(c - 0x80) << 8) | in[i + 1]];
        if (cp < 0x80) { /* 0: not a two-byte character of this table */
            covered = 0;
            break;
        }
        if (cp < 0x800) {
            o[j++] = (unsigned char)(0xC0 | (cp >> 6));
            o[j++] = (unsigned char)(0x80 | (cp & 0x3F));
        } else {
            o[j++] = (unsigned char)(0xE0 | (cp >> 12));
            o[j++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            o[j++] = (unsigned char)(0x80 | (cp & 0x3F));
        }
        i += 2;
    }
    Py_END_ALLOW_THREADS
    if (!covered) {
        Py_DECREF(out);
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (_PyBytes_Resize(&out, j) < 0)
        goto done;
    result = out;
done:
    PyBuffer_Release(&body);
    PyBuffer_Release(&table);
    return result;
}

static PyMethodDef methods[] = {
    {"to_utf8", to_utf8, METH_VARARGS,
     "to_utf8(body, table) -> bytes | None: body as UTF-8, or None where the table does not cover it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "etl.parse._transcode", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__transcode(void)
{
    return PyModule_Create(&module);
}
