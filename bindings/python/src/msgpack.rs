//! msgpack ↔ Python objects, directly (no JSON detour, no intermediate tree).
//!
//! * decode: map → `dict`, array → `list`, str → `str`, bin → `bytes` (one
//!   copy), int → `int`, float → `float`, bool, nil → `None`, ext → `ExtType`.
//! * encode: `dict` (and subclasses), `list`/`tuple`, `str`, `bytes`/`bytearray`/
//!   `memoryview` (as bin), `int` (−2⁶³ … 2⁶⁴−1), `float` (float 64), `bool`,
//!   `None`, `ExtType`. Large byte strings are copied with the GIL released.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};
use std::os::raw::c_char;

/// Deepest nesting accepted either way (protects the stack).
const MAX_DEPTH: usize = 256;
/// Byte strings at least this large are copied with the GIL released.
const BIG: usize = 1 << 20;

extern "C" {
    // In the stable ABI since 3.10 and exported by every CPython 3.x; declared
    // here because pyo3-ffi hides it from abi3-py39 builds.
    fn PyUnicode_AsUTF8AndSize(o: *mut ffi::PyObject, size: *mut ffi::Py_ssize_t) -> *const c_char;
}

// ---------------------------------------------------------------- decoding

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

#[derive(Debug)]
enum DecErr {
    Eof,
    Invalid(&'static str),
    Depth,
    Py(PyErr),
}

impl From<PyErr> for DecErr {
    fn from(e: PyErr) -> Self {
        DecErr::Py(e)
    }
}

type DResult<T> = Result<T, DecErr>;

impl<'a> Dec<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DecErr::Eof)?;
        if end > self.buf.len() {
            return Err(DecErr::Eof);
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn u8(&mut self) -> DResult<u8> {
        let b = *self.buf.get(self.pos).ok_or(DecErr::Eof)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn be<const N: usize>(&mut self) -> DResult<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len16(&mut self) -> DResult<usize> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }

    fn len32(&mut self) -> DResult<usize> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn value<'py>(&mut self, py: Python<'py>, depth: usize) -> DResult<Bound<'py, PyAny>> {
        let m = self.u8()?;
        match m {
            0x00..=0x7f => int_i64(py, m as i64),
            0x80..=0x8f => self.map(py, (m & 0x0f) as usize, depth),
            0x90..=0x9f => self.array(py, (m & 0x0f) as usize, depth),
            0xa0..=0xbf => self.str(py, (m & 0x1f) as usize),
            0xc0 => Ok(py.None().into_bound(py)),
            0xc2 => Ok(PyBool::new(py, false).to_owned().into_any()),
            0xc3 => Ok(PyBool::new(py, true).to_owned().into_any()),
            0xc4 => {
                let n = self.u8()? as usize;
                self.bin(py, n)
            }
            0xc5 => {
                let n = self.len16()?;
                self.bin(py, n)
            }
            0xc6 => {
                let n = self.len32()?;
                self.bin(py, n)
            }
            0xc7 => {
                let n = self.u8()? as usize;
                self.ext(py, n)
            }
            0xc8 => {
                let n = self.len16()?;
                self.ext(py, n)
            }
            0xc9 => {
                let n = self.len32()?;
                self.ext(py, n)
            }
            0xca => Ok(PyFloat::new(py, f32::from_be_bytes(self.be()?) as f64).into_any()),
            0xcb => Ok(PyFloat::new(py, f64::from_be_bytes(self.be()?)).into_any()),
            0xcc => int_i64(py, self.u8()? as i64),
            0xcd => int_i64(py, u16::from_be_bytes(self.be()?) as i64),
            0xce => int_i64(py, u32::from_be_bytes(self.be()?) as i64),
            0xcf => {
                let v = u64::from_be_bytes(self.be()?);
                let Ok(o) = v.into_pyobject(py);
                Ok(o.into_any())
            }
            0xd0 => int_i64(py, i8::from_be_bytes(self.be()?) as i64),
            0xd1 => int_i64(py, i16::from_be_bytes(self.be()?) as i64),
            0xd2 => int_i64(py, i32::from_be_bytes(self.be()?) as i64),
            0xd3 => int_i64(py, i64::from_be_bytes(self.be()?)),
            0xd4 => self.ext(py, 1),
            0xd5 => self.ext(py, 2),
            0xd6 => self.ext(py, 4),
            0xd7 => self.ext(py, 8),
            0xd8 => self.ext(py, 16),
            0xd9 => {
                let n = self.u8()? as usize;
                self.str(py, n)
            }
            0xda => {
                let n = self.len16()?;
                self.str(py, n)
            }
            0xdb => {
                let n = self.len32()?;
                self.str(py, n)
            }
            0xdc => {
                let n = self.len16()?;
                self.array(py, n, depth)
            }
            0xdd => {
                let n = self.len32()?;
                self.array(py, n, depth)
            }
            0xde => {
                let n = self.len16()?;
                self.map(py, n, depth)
            }
            0xdf => {
                let n = self.len32()?;
                self.map(py, n, depth)
            }
            0xe0..=0xff => int_i64(py, (m as i8) as i64),
            0xc1 => Err(DecErr::Invalid("the reserved byte 0xc1")),
        }
    }

    fn str<'py>(&mut self, py: Python<'py>, n: usize) -> DResult<Bound<'py, PyAny>> {
        let s = self.take(n)?;
        // Python validates the UTF-8 itself.
        let ptr = unsafe {
            ffi::PyUnicode_DecodeUTF8(s.as_ptr().cast(), s.len() as ffi::Py_ssize_t, std::ptr::null())
        };
        Ok(unsafe { Bound::from_owned_ptr_or_err(py, ptr) }?)
    }

    fn bin<'py>(&mut self, py: Python<'py>, n: usize) -> DResult<Bound<'py, PyAny>> {
        let s = self.take(n)?;
        Ok(new_bytes(py, s)?.into_any())
    }

    fn ext<'py>(&mut self, py: Python<'py>, n: usize) -> DResult<Bound<'py, PyAny>> {
        let code = self.u8()? as i8;
        let data = self.take(n)?;
        let cls = crate::util::support(py)?.getattr("ExtType")?;
        Ok(cls.call1((code, PyBytes::new(py, data)))?)
    }

    fn array<'py>(&mut self, py: Python<'py>, n: usize, depth: usize) -> DResult<Bound<'py, PyAny>> {
        if depth >= MAX_DEPTH {
            return Err(DecErr::Depth);
        }
        // Every element takes at least one byte: a hostile length cannot over-allocate.
        if n > self.remaining() {
            return Err(DecErr::Eof);
        }
        let list = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyList_New(n as ffi::Py_ssize_t)) }?;
        for i in 0..n {
            let v = self.value(py, depth + 1)?;
            // PyList_SetItem steals the reference.
            unsafe { ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, v.into_ptr()) };
        }
        Ok(list)
    }

    fn map<'py>(&mut self, py: Python<'py>, n: usize, depth: usize) -> DResult<Bound<'py, PyAny>> {
        if depth >= MAX_DEPTH {
            return Err(DecErr::Depth);
        }
        if n > self.remaining() / 2 {
            return Err(DecErr::Eof);
        }
        let dict = PyDict::new(py);
        for _ in 0..n {
            let k = self.value(py, depth + 1)?;
            let v = self.value(py, depth + 1)?;
            dict.set_item(k, v)?;
        }
        Ok(dict.into_any())
    }
}

#[inline]
fn int_i64(py: Python<'_>, v: i64) -> DResult<Bound<'_, PyAny>> {
    let Ok(o) = v.into_pyobject(py);
    Ok(o.into_any())
}

/// A new `bytes` holding a copy of `data` (copied with the GIL released when large).
pub fn new_bytes<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if data.len() < BIG {
        return Ok(PyBytes::new(py, data));
    }
    unsafe {
        let ptr = ffi::PyBytes_FromStringAndSize(std::ptr::null(), data.len() as ffi::Py_ssize_t);
        let obj = Bound::from_owned_ptr_or_err(py, ptr)?;
        let dst = ffi::PyBytes_AsString(ptr) as usize;
        // The new object is not visible to any other thread yet.
        py.detach(|| std::ptr::copy_nonoverlapping(data.as_ptr(), dst as *mut u8, data.len()));
        Ok(obj.cast_into_unchecked())
    }
}

/// Decode one msgpack value into Python objects; the whole buffer must be one value.
pub fn unpack<'py>(py: Python<'py>, buf: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let mut d = Dec { buf, pos: 0 };
    let res = d.value(py, 0).and_then(|v| {
        if d.pos != buf.len() {
            Err(DecErr::Invalid("trailing bytes after the value"))
        } else {
            Ok(v)
        }
    });
    res.map_err(|e| match e {
        DecErr::Eof => decode_error(py, "invalid msgpack: unexpected end of data".into()),
        DecErr::Invalid(what) => decode_error(py, format!("invalid msgpack: {what}")),
        DecErr::Depth => decode_error(py, format!("invalid msgpack: nested deeper than {MAX_DEPTH}")),
        DecErr::Py(err) => crate::errors::decode_from(py, "could not convert msgpack to Python", err),
    })
}

fn decode_error(py: Python<'_>, msg: String) -> PyErr {
    crate::errors::to_py(
        py,
        &fal_realtime::Error::new(fal_realtime::ErrorKind::Decode, msg),
    )
}

// ---------------------------------------------------------------- encoding

/// Encode a Python object as msgpack (`use_bin_type` semantics).
pub fn pack(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    match enc(obj, &mut buf, 0) {
        Ok(()) => Ok(buf),
        Err(e) => Err(encode_error(obj.py(), e)),
    }
}

fn encode_error(py: Python<'_>, e: PyErr) -> PyErr {
    let msg = crate::errors::describe(py, &e);
    crate::errors::to_py(
        py,
        &fal_realtime::Error::new(
            fal_realtime::ErrorKind::Encode,
            format!("could not encode the input as msgpack: {msg}"),
        ),
    )
}

#[inline]
fn type_is(obj: &Bound<'_, PyAny>, tp: *mut ffi::PyTypeObject) -> bool {
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == tp }
}

fn write_bin(py: Python<'_>, data: &[u8], buf: &mut Vec<u8>, immutable: bool) -> PyResult<()> {
    let n = u32::try_from(data.len()).map_err(|_| PyTypeError::new_err("bytes too long for msgpack"))?;
    let _ = rmp::encode::write_bin_len(buf, n);
    if immutable && data.len() >= BIG {
        buf.reserve_exact(data.len());
        py.detach(|| buf.extend_from_slice(data));
    } else {
        buf.extend_from_slice(data);
    }
    Ok(())
}

fn write_str(s: &Bound<'_, PyAny>, buf: &mut Vec<u8>) -> PyResult<()> {
    let mut size: ffi::Py_ssize_t = 0;
    let p = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if p.is_null() {
        return Err(PyErr::fetch(s.py()));
    }
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size as usize) };
    let n = u32::try_from(bytes.len()).map_err(|_| PyTypeError::new_err("str too long for msgpack"))?;
    let _ = rmp::encode::write_str_len(buf, n);
    buf.extend_from_slice(bytes);
    Ok(())
}

fn write_int(obj: &Bound<'_, PyAny>, buf: &mut Vec<u8>) -> PyResult<()> {
    match obj.extract::<i64>() {
        Ok(v) => {
            let _ = rmp::encode::write_sint(buf, v);
            Ok(())
        }
        Err(_) => match obj.extract::<u64>() {
            Ok(v) => {
                let _ = rmp::encode::write_uint(buf, v);
                Ok(())
            }
            Err(_) => Err(PyTypeError::new_err(
                "integer out of range for msgpack (-2**63 .. 2**64-1)",
            )),
        },
    }
}

fn write_map(d: &Bound<'_, PyDict>, buf: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    let n = u32::try_from(d.len()).map_err(|_| PyTypeError::new_err("dict too large for msgpack"))?;
    let _ = rmp::encode::write_map_len(buf, n);
    for (k, v) in d.iter() {
        enc(&k, buf, depth + 1)?;
        enc(&v, buf, depth + 1)?;
    }
    Ok(())
}

fn enc(obj: &Bound<'_, PyAny>, buf: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    if depth >= MAX_DEPTH {
        return Err(PyTypeError::new_err(format!("nested deeper than {MAX_DEPTH}")));
    }
    let py = obj.py();
    unsafe {
        // Fast path: exact built-in types, by type pointer.
        if type_is(obj, &raw mut ffi::PyUnicode_Type) {
            return write_str(obj, buf);
        }
        if type_is(obj, &raw mut ffi::PyDict_Type) {
            return write_map(obj.cast_unchecked::<PyDict>(), buf, depth);
        }
        if type_is(obj, &raw mut ffi::PyLong_Type) {
            return write_int(obj, buf);
        }
        if type_is(obj, &raw mut ffi::PyFloat_Type) {
            let _ = rmp::encode::write_f64(buf, ffi::PyFloat_AsDouble(obj.as_ptr()));
            return Ok(());
        }
        if type_is(obj, &raw mut ffi::PyBool_Type) {
            let _ = rmp::encode::write_bool(buf, obj.as_ptr() == ffi::Py_True());
            return Ok(());
        }
        if obj.is_none() {
            let _ = rmp::encode::write_nil(buf);
            return Ok(());
        }
        if type_is(obj, &raw mut ffi::PyBytes_Type) {
            return write_bin(py, obj.cast_unchecked::<PyBytes>().as_bytes(), buf, true);
        }
        if type_is(obj, &raw mut ffi::PyList_Type) {
            let l = obj.cast_unchecked::<PyList>();
            let n = u32::try_from(l.len()).map_err(|_| PyTypeError::new_err("list too long for msgpack"))?;
            let _ = rmp::encode::write_array_len(buf, n);
            for item in l.iter() {
                enc(&item, buf, depth + 1)?;
            }
            return Ok(());
        }
        if type_is(obj, &raw mut ffi::PyTuple_Type) {
            let t = obj.cast_unchecked::<PyTuple>();
            let n = u32::try_from(t.len()).map_err(|_| PyTypeError::new_err("tuple too long for msgpack"))?;
            let _ = rmp::encode::write_array_len(buf, n);
            for item in t.iter() {
                enc(&item, buf, depth + 1)?;
            }
            return Ok(());
        }
    }
    // Subclasses and the less common types.
    if obj.is_instance_of::<PyBool>() {
        let _ = rmp::encode::write_bool(buf, obj.is_truthy()?);
        return Ok(());
    }
    if obj.is_instance_of::<PyString>() {
        return write_str(obj, buf);
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return write_map(d, buf, depth);
    }
    if obj.is_instance_of::<pyo3::types::PyInt>() {
        return write_int(obj, buf);
    }
    if obj.is_instance_of::<PyFloat>() {
        let _ = rmp::encode::write_f64(buf, obj.extract::<f64>()?);
        return Ok(());
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return write_bin(py, b.as_bytes(), buf, true);
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        // No Python code runs while the slice is in use.
        return write_bin(py, unsafe { b.as_bytes() }, buf, false);
    }
    if obj.is_instance_of::<pyo3::types::PyMemoryView>() {
        let b = obj.call_method0("tobytes")?;
        return write_bin(py, b.cast::<PyBytes>()?.as_bytes(), buf, true);
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let n = u32::try_from(l.len()).map_err(|_| PyTypeError::new_err("list too long for msgpack"))?;
        let _ = rmp::encode::write_array_len(buf, n);
        for item in l.iter() {
            enc(&item, buf, depth + 1)?;
        }
        return Ok(());
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let ext = crate::util::support(py)?.getattr("ExtType")?;
        if obj.is_instance(&ext)? {
            let code: i8 = t.get_item(0)?.extract()?;
            let data = t.get_item(1)?;
            let data = data.cast::<PyBytes>()?.as_bytes();
            let n =
                u32::try_from(data.len()).map_err(|_| PyTypeError::new_err("ext too long for msgpack"))?;
            let _ = rmp::encode::write_ext_meta(buf, n, code);
            buf.extend_from_slice(data);
            return Ok(());
        }
        let n = u32::try_from(t.len()).map_err(|_| PyTypeError::new_err("tuple too long for msgpack"))?;
        let _ = rmp::encode::write_array_len(buf, n);
        for item in t.iter() {
            enc(&item, buf, depth + 1)?;
        }
        return Ok(());
    }
    let name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(PyTypeError::new_err(format!("can not serialize {name:?} object")))
}

/// `packb(obj) -> bytes`: encode like the connections do.
#[pyfunction]
pub fn packb<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let v = pack(obj)?;
    new_bytes(py, &v)
}

/// `unpackb(data) -> object`: decode like the connections do.
#[pyfunction]
pub fn unpackb<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return unpack(py, b.as_bytes());
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        let v = b.to_vec();
        return unpack(py, &v);
    }
    let b = data.call_method0("__bytes__")?;
    unpack(py, b.cast::<PyBytes>()?.as_bytes())
}
