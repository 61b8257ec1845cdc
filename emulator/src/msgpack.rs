//! A fast, allocation-free check that a buffer holds exactly one well-formed msgpack value.

/// True when `buf` is exactly one well-formed msgpack value (strings must be UTF-8, as the
/// Python server's `msgpack.unpackb(raw=False)` requires). Iterative: no recursion limit.
pub(crate) fn is_single_value(buf: &[u8]) -> bool {
    let mut pos = 0usize;
    // Values still to read.
    let mut pending: u64 = 1;
    while pending > 0 {
        // Every value takes at least one byte: cheap early exit for absurd lengths.
        if pending > (buf.len() - pos) as u64 {
            return false;
        }
        let marker = buf[pos];
        pos += 1;
        pending -= 1;
        let ok = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => true,
            0x80..=0x8f => {
                pending += 2 * u64::from(marker & 0x0f);
                true
            }
            0x90..=0x9f => {
                pending += u64::from(marker & 0x0f);
                true
            }
            0xa0..=0xbf => str_body(buf, &mut pos, usize::from(marker & 0x1f)),
            0xc1 => false,
            0xc4 => len(buf, &mut pos, 1).is_some_and(|n| skip(buf, &mut pos, n)),
            0xc5 => len(buf, &mut pos, 2).is_some_and(|n| skip(buf, &mut pos, n)),
            0xc6 => len(buf, &mut pos, 4).is_some_and(|n| skip(buf, &mut pos, n)),
            0xc7 => len(buf, &mut pos, 1).is_some_and(|n| skip(buf, &mut pos, n + 1)),
            0xc8 => len(buf, &mut pos, 2).is_some_and(|n| skip(buf, &mut pos, n + 1)),
            0xc9 => len(buf, &mut pos, 4).is_some_and(|n| skip(buf, &mut pos, n.saturating_add(1))),
            0xca => skip(buf, &mut pos, 4),
            0xcb => skip(buf, &mut pos, 8),
            0xcc | 0xd0 => skip(buf, &mut pos, 1),
            0xcd | 0xd1 => skip(buf, &mut pos, 2),
            0xce | 0xd2 => skip(buf, &mut pos, 4),
            0xcf | 0xd3 => skip(buf, &mut pos, 8),
            0xd4 => skip(buf, &mut pos, 2),
            0xd5 => skip(buf, &mut pos, 3),
            0xd6 => skip(buf, &mut pos, 5),
            0xd7 => skip(buf, &mut pos, 9),
            0xd8 => skip(buf, &mut pos, 17),
            0xd9 => len(buf, &mut pos, 1).is_some_and(|n| str_body(buf, &mut pos, n)),
            0xda => len(buf, &mut pos, 2).is_some_and(|n| str_body(buf, &mut pos, n)),
            0xdb => len(buf, &mut pos, 4).is_some_and(|n| str_body(buf, &mut pos, n)),
            0xdc => len(buf, &mut pos, 2).is_some_and(|n| {
                pending += n as u64;
                true
            }),
            0xdd => len(buf, &mut pos, 4).is_some_and(|n| {
                pending += n as u64;
                true
            }),
            0xde => len(buf, &mut pos, 2).is_some_and(|n| {
                pending += 2 * n as u64;
                true
            }),
            0xdf => len(buf, &mut pos, 4).is_some_and(|n| {
                pending += 2 * n as u64;
                true
            }),
        };
        if !ok {
            return false;
        }
    }
    pos == buf.len()
}

/// Reads a big-endian length of `width` bytes.
fn len(buf: &[u8], pos: &mut usize, width: usize) -> Option<usize> {
    let bytes = buf.get(*pos..*pos + width)?;
    *pos += width;
    Some(bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
}

fn skip(buf: &[u8], pos: &mut usize, n: usize) -> bool {
    match pos.checked_add(n) {
        Some(end) if end <= buf.len() => {
            *pos = end;
            true
        }
        _ => false,
    }
}

fn str_body(buf: &[u8], pos: &mut usize, n: usize) -> bool {
    let start = *pos;
    skip(buf, pos, n) && std::str::from_utf8(&buf[start..*pos]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_single_value;
    use rmpv::Value;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn accepts_well_formed_values() {
        let values = vec![
            Value::Nil,
            Value::Boolean(true),
            Value::from(-1),
            Value::from(-200),
            Value::from(1u64 << 40),
            Value::from(i64::MIN),
            Value::F32(1.5),
            Value::F64(2.5),
            Value::from("hi"),
            Value::from("x".repeat(40)),
            Value::from("y".repeat(300)),
            Value::from("z".repeat(70_000)),
            Value::Binary(vec![0, 1, 2, 255]),
            Value::Binary(vec![7; 300]),
            Value::Binary(vec![7; 70_000]),
            Value::Ext(5, vec![1]),
            Value::Ext(5, vec![1, 2]),
            Value::Ext(5, vec![1; 4]),
            Value::Ext(5, vec![1; 8]),
            Value::Ext(5, vec![1; 16]),
            Value::Ext(5, vec![1; 3]),
            Value::Ext(5, vec![1; 300]),
            Value::Array((0..20).map(Value::from).collect()),
            Value::Array((0..70_000).map(Value::from).collect()),
            Value::Map(vec![
                (Value::from("a"), Value::from(1)),
                (Value::from("b"), Value::Array(vec![Value::Nil, Value::from("c")])),
            ]),
            Value::Map(
                (0..20)
                    .map(|i| (Value::from(i), Value::Binary(vec![i as u8])))
                    .collect(),
            ),
            Value::Map(vec![]),
            Value::Array(vec![]),
        ];
        for v in values {
            assert!(is_single_value(&enc(&v)), "{v:?}");
        }
        // Deep nesting is fine (no recursion).
        let mut deep = vec![0x91u8; 100_000];
        deep.push(0xc0);
        assert!(is_single_value(&deep));
    }

    #[test]
    fn rejects_malformed_values() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xc1],
            vec![0xc1, 0xff],
            vec![0x92, 0x01],
            vec![0x81, 0x01],
            vec![0xa3, b'a', b'b'],
            vec![0xa2, 0xff, 0xfe],
            vec![0xc4, 0x05, 1, 2],
            vec![0xcd, 0x01],
            vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
            vec![0xdb, 0xff, 0xff, 0xff, 0xff],
            vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
            vec![0x01, 0x02],
            vec![0x91],
        ];
        for c in cases {
            assert!(!is_single_value(&c), "{c:?}");
        }
    }
}
