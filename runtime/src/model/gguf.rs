//! Reading a GGUF file's architecture before mistral.rs sees it: mistral.rs 0.8.1 panics
//! on architectures it does not know (e.g. `gemma3`); we answer with a clear error.

use std::{
    io::{self, Read},
    path::Path,
};

/// GGUF architectures mistral.rs 0.8.1 loads.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "llama",
    "phi2",
    "phi3",
    "starcoder2",
    "qwen2",
    "qwen3",
    "qwen3moe",
    "mistral3",
];

/// Why a GGUF file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// Not a GGUF file, or a damaged header.
    #[error("{path}: not a GGUF file ({why})")]
    Format {
        /// The file.
        path: String,
        /// What was wrong.
        why: String,
    },
    /// A GGUF file of an architecture the engine does not support.
    #[error(
        "{path}: GGUF architecture '{arch}' is not supported by mistral.rs 0.8.1; supported: {}",
        SUPPORTED_ARCHITECTURES.join(", ")
    )]
    Unsupported {
        /// The file.
        path: String,
        /// Its `general.architecture`.
        arch: String,
    },
}

/// Returns the file's `general.architecture` if mistral.rs can load it.
pub fn check_architecture(path: &Path) -> Result<String, GgufError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| GgufError::Io {
        path: p.clone(),
        source,
    })?;
    let arch = read_architecture(&mut io::BufReader::new(file)).map_err(|why| match why {
        HeaderError::Io(source) => GgufError::Io {
            path: p.clone(),
            source,
        },
        HeaderError::Format(why) => GgufError::Format {
            path: p.clone(),
            why,
        },
    })?;
    if SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        Ok(arch)
    } else {
        Err(GgufError::Unsupported { path: p, arch })
    }
}

#[derive(Debug)]
enum HeaderError {
    Io(io::Error),
    Format(String),
}

impl From<io::Error> for HeaderError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HeaderError::Format("the header ends early".into())
        } else {
            HeaderError::Io(e)
        }
    }
}

/// Longest string we accept in the header (keys, and values we skip).
const MAX_STRING: u64 = 16 << 20;

/// Reads the magic and version: the number of key/value pairs, and whether lengths are
/// 64-bit (versions 2 and 3) rather than 32-bit (version 1).
fn read_header(r: &mut impl Read) -> Result<(u64, bool), HeaderError> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        return Err(HeaderError::Format("the magic bytes are not 'GGUF'".into()));
    }
    match read_u32(r)? {
        1 => {
            let _tensors = read_u32(r)?;
            Ok((u64::from(read_u32(r)?), false))
        }
        2 | 3 => {
            let _tensors = read_u64(r)?;
            Ok((read_u64(r)?, true))
        }
        v => Err(HeaderError::Format(format!("unknown GGUF version {v}"))),
    }
}

fn read_architecture(r: &mut impl Read) -> Result<String, HeaderError> {
    let (kv_count, wide) = read_header(r)?;
    for _ in 0..kv_count {
        let key = read_string(r, wide)?;
        let ty = read_u32(r)?;
        if key == "general.architecture" {
            if ty != 8 {
                return Err(HeaderError::Format(
                    "general.architecture is not a string".into(),
                ));
            }
            return read_string(r, wide);
        }
        skip_value(r, ty, wide, 0)?;
    }
    Err(HeaderError::Format(
        "the header has no general.architecture".into(),
    ))
}

/// A GGUF header value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Any unsigned integer type.
    Uint(u64),
    /// Any signed integer type.
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Uint(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Float(f) => Some(*f),
            Self::Int(i) => Some(*i as f64),
            Self::Uint(u) => Some(*u as f64),
            _ => None,
        }
    }
}

/// Most items one header array may hold (a vocabulary of 256k tokens has 256k).
const MAX_ARRAY: u64 = 4 << 20;

/// Every key/value of a GGUF file's header (a vocab-only file has no tensors to skip).
pub fn read_metadata(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, MetaValue>, GgufError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| GgufError::Io {
        path: p.clone(),
        source,
    })?;
    read_all(&mut io::BufReader::new(file)).map_err(|why| match why {
        HeaderError::Io(source) => GgufError::Io { path: p, source },
        HeaderError::Format(why) => GgufError::Format { path: p, why },
    })
}

fn read_all(
    r: &mut impl Read,
) -> Result<std::collections::BTreeMap<String, MetaValue>, HeaderError> {
    let (kv_count, wide) = read_header(r)?;
    let mut out = std::collections::BTreeMap::new();
    for _ in 0..kv_count.min(1 << 16) {
        let key = read_string(r, wide)?;
        let ty = read_u32(r)?;
        let value = read_value(r, ty, wide, 0)?;
        out.insert(key, value);
    }
    Ok(out)
}

fn read_value(
    r: &mut impl Read,
    ty: u32,
    wide: bool,
    depth: u32,
) -> Result<MetaValue, HeaderError> {
    let mut b8 = [0u8; 8];
    Ok(match ty {
        0 => {
            r.read_exact(&mut b8[..1])?;
            MetaValue::Uint(u64::from(b8[0]))
        }
        1 => {
            r.read_exact(&mut b8[..1])?;
            MetaValue::Int(i64::from(b8[0] as i8))
        }
        2 => {
            r.read_exact(&mut b8[..2])?;
            MetaValue::Uint(u64::from(u16::from_le_bytes([b8[0], b8[1]])))
        }
        3 => {
            r.read_exact(&mut b8[..2])?;
            MetaValue::Int(i64::from(i16::from_le_bytes([b8[0], b8[1]])))
        }
        4 => MetaValue::Uint(u64::from(read_u32(r)?)),
        5 => MetaValue::Int(i64::from(read_u32(r)? as i32)),
        6 => MetaValue::Float(f64::from(f32::from_bits(read_u32(r)?))),
        7 => {
            r.read_exact(&mut b8[..1])?;
            MetaValue::Bool(b8[0] != 0)
        }
        8 => MetaValue::Str(read_string(r, wide)?),
        9 => {
            if depth > 4 {
                return Err(HeaderError::Format("arrays nested too deeply".into()));
            }
            let item = read_u32(r)?;
            let count = read_len(r, wide)?;
            if count > MAX_ARRAY {
                return Err(HeaderError::Format(format!(
                    "a header array of {count} items"
                )));
            }
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(read_value(r, item, wide, depth + 1)?);
            }
            MetaValue::Array(items)
        }
        10 => MetaValue::Uint(read_u64(r)?),
        11 => MetaValue::Int(read_u64(r)? as i64),
        12 => MetaValue::Float(f64::from_bits(read_u64(r)?)),
        t => return Err(HeaderError::Format(format!("unknown value type {t}"))),
    })
}

/// A value to write into a GGUF header (typed as llama.cpp's readers expect it).
#[derive(Debug, Clone)]
pub enum WriteValue {
    /// `uint32`.
    U32(u32),
    /// `uint64`.
    U64(u64),
    /// `float32`.
    F32(f32),
    /// `string`.
    Str(String),
    /// An array of strings.
    Strs(Vec<String>),
    /// An array of `int32`.
    I32s(Vec<i32>),
    /// An array of `float32`.
    F32s(Vec<f32>),
    /// A boolean.
    Bool(bool),
}

fn put_array_head(out: &mut Vec<u8>, item_type: u32, len: usize) {
    out.extend(9u32.to_le_bytes());
    out.extend(item_type.to_le_bytes());
    out.extend((len as u64).to_le_bytes());
}

/// Writes a GGUF v3 file: header values, then f32 tensors given as (name, dims in GGUF order
/// — innermost first —, little-endian f32 bytes), aligned to 32 bytes.
pub fn write_f32(
    path: &Path,
    metadata: &[(String, WriteValue)],
    tensors: &[(String, Vec<u64>, Vec<u8>)],
) -> io::Result<()> {
    const ALIGN: u64 = 32;
    let mut out: Vec<u8> = Vec::new();
    let put_str = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64 + 1).to_le_bytes());
    put_str(&mut out, "general.alignment");
    out.extend(4u32.to_le_bytes());
    out.extend((ALIGN as u32).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        match value {
            WriteValue::U32(v) => {
                out.extend(4u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
            WriteValue::U64(v) => {
                out.extend(10u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
            WriteValue::F32(v) => {
                out.extend(6u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
            WriteValue::Str(v) => {
                out.extend(8u32.to_le_bytes());
                put_str(&mut out, v);
            }
            WriteValue::Strs(v) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((v.len() as u64).to_le_bytes());
                for s in v {
                    put_str(&mut out, s);
                }
            }
            // Arrays: type 9, then the item type (5 int32, 6 float32), count, items.
            WriteValue::I32s(v) => {
                put_array_head(&mut out, 5, v.len());
                v.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
            WriteValue::F32s(v) => {
                put_array_head(&mut out, 6, v.len());
                v.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
            WriteValue::Bool(v) => {
                out.extend(7u32.to_le_bytes());
                out.push(u8::from(*v));
            }
        }
    }
    let mut offset = 0u64;
    for (name, dims, data) in tensors {
        put_str(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(0u32.to_le_bytes()); // GGML_TYPE_F32
        out.extend(offset.to_le_bytes());
        offset += (data.len() as u64).div_ceil(ALIGN) * ALIGN;
    }
    let pad = |out: &mut Vec<u8>| {
        while !(out.len() as u64).is_multiple_of(ALIGN) {
            out.push(0);
        }
    };
    pad(&mut out);
    for (_, _, data) in tensors {
        out.extend(data);
        pad(&mut out);
    }
    let tmp = path.with_extension("gguf.tmp");
    std::fs::write(&tmp, &out)?;
    std::fs::rename(&tmp, path)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_len(r: &mut impl Read, wide: bool) -> io::Result<u64> {
    if wide {
        read_u64(r)
    } else {
        read_u32(r).map(u64::from)
    }
}

fn read_string(r: &mut impl Read, wide: bool) -> Result<String, HeaderError> {
    let len = read_len(r, wide)?;
    if len > MAX_STRING {
        return Err(HeaderError::Format(format!(
            "a {len}-byte string in the header"
        )));
    }
    let mut buf = Vec::new();
    r.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(HeaderError::Format("the header ends early".into()));
    }
    String::from_utf8(buf).map_err(|_| HeaderError::Format("a header string is not UTF-8".into()))
}

fn skip_value(r: &mut impl Read, ty: u32, wide: bool, depth: u32) -> Result<(), HeaderError> {
    let fixed = match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => {
            read_string(r, wide)?;
            return Ok(());
        }
        9 => {
            if depth > 4 {
                return Err(HeaderError::Format("arrays nested too deeply".into()));
            }
            let item = read_u32(r)?;
            let count = read_len(r, wide)?;
            for _ in 0..count {
                skip_value(r, item, wide, depth + 1)?;
            }
            return Ok(());
        }
        t => return Err(HeaderError::Format(format!("unknown value type {t}"))),
    };
    io::copy(&mut r.take(fixed), &mut io::sink())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf(arch: &str) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        // An array of strings first, to exercise skipping.
        let key = b"tokenizer.ggml.tokens";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        for s in ["a", "bc"] {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        }
        let key = b"general.architecture";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(8u32.to_le_bytes());
        b.extend((arch.len() as u64).to_le_bytes());
        b.extend(arch.as_bytes());
        b
    }

    #[test]
    fn supported_unsupported_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("q.gguf");
        std::fs::write(&ok, gguf("qwen3")).unwrap();
        assert_eq!(check_architecture(&ok).unwrap(), "qwen3");

        let bad = dir.path().join("g.gguf");
        std::fs::write(&bad, gguf("gemma3")).unwrap();
        let e = check_architecture(&bad).unwrap_err().to_string();
        assert!(
            e.contains("'gemma3' is not supported") && e.contains("qwen3"),
            "{e}"
        );

        let torn = dir.path().join("t.gguf");
        let mut bytes = gguf("qwen3");
        bytes.truncate(40);
        std::fs::write(&torn, bytes).unwrap();
        let e = check_architecture(&torn).unwrap_err().to_string();
        assert!(e.contains("ends early"), "{e}");

        let not = dir.path().join("n.gguf");
        std::fs::write(&not, b"PK\x03\x04").unwrap();
        assert!(check_architecture(&not)
            .unwrap_err()
            .to_string()
            .contains("magic"));
    }
}
