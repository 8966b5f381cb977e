//! Reading bencode the way libtorrent does: keys in any order, the raw `info` bytes kept.
//!
//! Why a decoder of our own rather than a crate: `bendy` 0.6 (still used to *write* torrents)
//! checks key order in the state tracker every `Decoder` goes through and has no switch to
//! turn it off, so it cannot read the unsorted top-level `piece layers` PyPI `torrentfile`
//! writes, which libtorrent, aria2 and WebTorrent accept. The other crates either enforce the
//! order too, or deserialize into maps that silently keep one of two duplicate keys, and none
//! hands back the exact `info` bytes (the info hash is over them) together with the values and
//! whether they were canonical. Bencode is four small productions; this decoder reads them into
//! borrowed values with byte offsets in every error, refuses duplicate keys, bounds nesting, and
//! notes the first non-canonical spot (unsorted keys, leading zeros, `-0`) so that a
//! non-canonical `info` can be warned about while its hash stays that of its bytes.

use std::fmt;

/// A decoded value, borrowing its byte strings from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Integer(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A dictionary in file order, looked up by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
    /// Entry indices in key order; `None` when the file had the keys sorted already.
    by_key: Option<Box<[u32]>>,
}

impl<'a> Dict<'a> {
    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        let found = match &self.by_key {
            None => self.entries.binary_search_by(|(k, _)| (*k).cmp(key)).ok(),
            Some(order) => order
                .binary_search_by(|&i| self.entries[i as usize].0.cmp(key))
                .ok()
                .map(|at| order[at] as usize),
        };
        found.map(|i| &self.entries[i].1)
    }

    /// The entries in the order the file lists them.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where and why bencode was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem} at byte {offset}")]
pub struct DecodeError {
    pub offset: usize,
    pub problem: Problem,
}

/// What was wrong with the bencode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the data ends inside a value")]
    Truncated,
    #[error("nothing to decode")]
    Empty,
    #[error("unexpected byte {0} where a value should start")]
    UnexpectedByte(ShownByte),
    #[error("malformed integer")]
    Integer,
    #[error("integer does not fit in 64 bits")]
    IntegerOverflow,
    #[error("malformed string length")]
    StringLength,
    #[error("string of {0} bytes runs past the end of the data")]
    StringPastEnd(u64),
    #[error("dictionary key is not a byte string")]
    KeyNotString,
    #[error("dictionary key \"{0}\" appears twice")]
    DuplicateKey(String),
    #[error("{0} bytes follow the value")]
    Trailing(usize),
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
}

/// A byte shown as a character when printable, else in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShownByte(pub u8);

impl fmt::Display for ShownByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// A spot where valid bencode is not in the canonical form BEP 3 asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonCanonical {
    pub offset: usize,
    pub what: NonCanonicalKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NonCanonicalKind {
    /// A key that sorts before the key ahead of it.
    UnsortedKey(String),
    /// An integer or string length written with leading zeros.
    LeadingZero,
    /// `i-0e`.
    NegativeZero,
}

impl fmt::Display for NonCanonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            NonCanonicalKind::UnsortedKey(key) => write!(f, "key \"{key}\" out of order")?,
            NonCanonicalKind::LeadingZero => f.write_str("a number with leading zeros")?,
            NonCanonicalKind::NegativeZero => f.write_str("a negative zero")?,
        }
        write!(f, " at byte {}", self.offset)
    }
}

/// A decoded `.torrent`: its top-level dictionary and the raw `info` value.
#[derive(Debug)]
pub struct TorrentFile<'a> {
    pub top: Dict<'a>,
    /// The bytes of the top-level `info` value exactly as written, if there is one.
    pub raw_info: Option<&'a [u8]>,
    /// The first non-canonical spot inside `info`.
    pub info_non_canonical: Option<NonCanonical>,
    /// Bytes after the top-level dictionary, ignored as libtorrent ignores them.
    pub trailing: usize,
}

/// Why a file is not a bencoded torrent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TorrentFileError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the torrent is not a bencoded dictionary")]
    NotADict,
}

/// Decodes a whole `.torrent`: a dictionary at the top, nesting at most `max_depth` levels.
///
/// # Errors
/// Malformed bencode, duplicate keys, nesting too deep, or a top level that is not a dictionary.
pub fn decode_torrent(bytes: &[u8], max_depth: usize) -> Result<TorrentFile<'_>, TorrentFileError> {
    let mut decoder = Decoder {
        bytes,
        pos: 0,
        max_depth,
        non_canonical: None,
    };
    match bytes.first() {
        None => return Err(decoder.error(Problem::Empty).into()),
        Some(b'd') => {}
        Some(b'i' | b'l' | b'0'..=b'9') => return Err(TorrentFileError::NotADict),
        Some(&other) => {
            return Err(decoder
                .error(Problem::UnexpectedByte(ShownByte(other)))
                .into())
        }
    }
    decoder.pos = 1;
    let mut raw_info = None;
    let mut info_non_canonical = None;
    let top = decoder.dict_entries(|decoder, key, start| {
        if key != b"info" {
            return decoder.value(1);
        }
        let outside = decoder.non_canonical.take();
        let value = decoder.value(1)?;
        raw_info = Some(&decoder.bytes[start..decoder.pos]);
        info_non_canonical = decoder.non_canonical.take();
        decoder.non_canonical = outside;
        Ok(value)
    })?;
    Ok(TorrentFile {
        top,
        raw_info,
        info_non_canonical,
        trailing: bytes.len() - decoder.pos,
    })
}

/// Decodes one value and checks that nothing follows it.
///
/// # Errors
/// Malformed bencode, duplicate keys, nesting too deep, or bytes after the value.
pub fn decode(bytes: &[u8], max_depth: usize) -> Result<Value<'_>, DecodeError> {
    let mut decoder = Decoder {
        bytes,
        pos: 0,
        max_depth,
        non_canonical: None,
    };
    if bytes.is_empty() {
        return Err(decoder.error(Problem::Empty));
    }
    let value = decoder.value(0)?;
    match decoder.bytes.get(decoder.pos) {
        None => Ok(value),
        Some(_) => Err(decoder.error(Problem::Trailing(bytes.len() - decoder.pos))),
    }
}

struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// The first non-canonical spot seen.
    non_canonical: Option<NonCanonical>,
}

impl<'a> Decoder<'a> {
    fn error(&self, problem: Problem) -> DecodeError {
        DecodeError {
            offset: self.pos,
            problem,
        }
    }

    /// Notes a non-canonical spot unless an earlier one is noted already.
    fn note(&mut self, offset: usize, what: impl FnOnce() -> NonCanonicalKind) {
        if self.non_canonical.is_none() {
            self.non_canonical = Some(NonCanonical {
                offset,
                what: what(),
            });
        }
    }

    /// Where `part`, a slice of the input, starts in it.
    fn offset_of(&self, part: &[u8]) -> usize {
        part.as_ptr() as usize - self.bytes.as_ptr() as usize
    }

    /// A duplicate `key` (a slice of the input), placed at its second occurrence.
    fn duplicate(&self, key: &[u8]) -> DecodeError {
        DecodeError {
            offset: self.offset_of(key),
            problem: Problem::DuplicateKey(shown(key)),
        }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error(Problem::Truncated))
    }

    /// The value starting at `pos`, `depth` levels inside containers.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                self.integer().map(Value::Integer)
            }
            b'0'..=b'9' => self.string().map(Value::Bytes),
            b'l' | b'd' if depth >= self.max_depth => {
                Err(self.error(Problem::TooDeep(self.max_depth)))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                self.dict_entries(|decoder, _, _| decoder.value(depth + 1))
                    .map(Value::Dict)
            }
            other => Err(self.error(Problem::UnexpectedByte(ShownByte(other)))),
        }
    }

    /// The entries of a dictionary whose `d` has been read; `value` reads each value, given
    /// the decoder, the key and the value's offset.
    fn dict_entries(
        &mut self,
        mut value: impl FnMut(&mut Self, &'a [u8], usize) -> Result<Value<'a>, DecodeError>,
    ) -> Result<Dict<'a>, DecodeError> {
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        let mut sorted = true;
        loop {
            match self.peek()? {
                b'e' => break,
                b'0'..=b'9' => {}
                _ => return Err(self.error(Problem::KeyNotString)),
            }
            let key = self.string()?;
            if let Some((last, _)) = entries.last() {
                if key == *last {
                    return Err(self.duplicate(key));
                }
                if key < *last {
                    sorted = false;
                    self.note(self.offset_of(key), || {
                        NonCanonicalKind::UnsortedKey(shown(key))
                    });
                }
            }
            let start = self.pos;
            let item = value(self, key, start)?;
            entries.push((key, item));
        }
        self.pos += 1;
        let by_key = if sorted {
            None
        } else {
            let mut order: Vec<u32> = (0..entries.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| entries[a as usize].0.cmp(entries[b as usize].0));
            if let Some(pair) = order
                .windows(2)
                .find(|w| entries[w[0] as usize].0 == entries[w[1] as usize].0)
            {
                return Err(self.duplicate(entries[pair[0].max(pair[1]) as usize].0));
            }
            Some(order.into_boxed_slice())
        };
        Ok(Dict { entries, by_key })
    }

    /// An integer after its `i`, through its `e`.
    fn integer(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits = self.digits();
        if digits.is_empty() || self.peek()? != b'e' {
            return Err(DecodeError {
                offset: start,
                problem: Problem::Integer,
            });
        }
        self.pos += 1;
        if digits.len() > 1 && digits[0] == b'0' {
            self.note(start, || NonCanonicalKind::LeadingZero);
        }
        let mut value: i64 = 0;
        for &d in digits {
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    let d = i64::from(d - b'0');
                    if negative {
                        v.checked_sub(d)
                    } else {
                        v.checked_add(d)
                    }
                })
                .ok_or(DecodeError {
                    offset: start,
                    problem: Problem::IntegerOverflow,
                })?;
        }
        if negative && value == 0 {
            self.note(start, || NonCanonicalKind::NegativeZero);
        }
        Ok(value)
    }

    /// A string: its decimal length, `:`, then that many bytes.
    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let digits = self.digits();
        if digits.is_empty() || self.peek()? != b':' {
            return Err(self.error(Problem::StringLength));
        }
        self.pos += 1;
        if digits.len() > 1 && digits[0] == b'0' {
            self.note(start, || NonCanonicalKind::LeadingZero);
        }
        let length = digits
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .ok_or(DecodeError {
                offset: start,
                problem: Problem::StringLength,
            })?;
        let left = self.bytes.len() - self.pos;
        match usize::try_from(length) {
            Ok(length) if length <= left => {
                let bytes = &self.bytes[self.pos..self.pos + length];
                self.pos += length;
                Ok(bytes)
            }
            _ => Err(DecodeError {
                offset: start,
                problem: Problem::StringPastEnd(length),
            }),
        }
    }

    /// The run of ASCII digits at `pos`.
    fn digits(&mut self) -> &'a [u8] {
        let start = self.pos;
        let count = self.bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.pos += count;
        &self.bytes[start..self.pos]
    }
}

/// A key for messages: UTF-8 as text, other bytes escaped.
fn shown(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsorted_dictionaries_keep_file_order_and_find_every_key() {
        let Value::Dict(dict) = decode(b"d1:ci3e1:ai1e1:bi2ee", 8).unwrap() else {
            panic!("a dictionary");
        };
        let keys: Vec<&[u8]> = dict.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [&b"c"[..], b"a", b"b"]);
        for (key, value) in [(&b"a"[..], 1), (b"b", 2), (b"c", 3)] {
            assert_eq!(dict.get(key), Some(&Value::Integer(value)));
        }
        assert_eq!(dict.get(b"d"), None);
    }

    #[test]
    fn non_canonical_spots_are_noted_inside_info_only() {
        for (info, spot) in [
            (&b"d1:ai05ee"[..], "a number with leading zeros at byte 24"),
            (b"d1:ai-0ee", "a negative zero at byte 24"),
            (b"d1:a02:xye", "a number with leading zeros at byte 23"),
            (b"d1:bi1e1:ai2ee", "key \"a\" out of order at byte 28"),
        ] {
            let bytes = [&b"d1:zi0e1:ai1e4:info"[..], info, b"e"].concat();
            let file = decode_torrent(&bytes, 8).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(file.raw_info, Some(info));
            assert_eq!(file.info_non_canonical.unwrap().to_string(), spot);
        }
        // Unsorted outside `info`, and trailing bytes: read, nothing noted for `info`.
        let file = decode_torrent(b"d1:zi0e4:infod1:ai1ee1:ai1eeXYZ", 8).unwrap();
        assert_eq!(file.info_non_canonical, None);
        assert_eq!(file.trailing, 3);
    }

    #[test]
    fn a_duplicate_anywhere_is_refused() {
        for (bytes, key, offset) in [
            (&b"d1:ai1e1:ai1ee"[..], "a", 9),
            (b"d1:bi1e1:ai1e1:bi1ee", "b", 15),
            (b"ld1:ai1e1:ai2eee", "a", 10),
        ] {
            let error = decode(bytes, 8).unwrap_err();
            assert_eq!(error.problem, Problem::DuplicateKey(key.into()));
            assert_eq!(error.offset, offset);
        }
    }
}
