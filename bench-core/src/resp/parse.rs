//! The control plane's parser: a whole reply as a [`Frame`] borrowed from the buffer.

use super::ParseError;
use super::scan::{line_at, parse_int};

/// A reply borrowed from the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    /// `None` is the null bulk string (`$-1`) or RESP3 null (`_`).
    Bulk(Option<&'a [u8]>),
    /// `None` is the null array (`*-1`).
    Array(Option<Vec<Frame<'a>>>),
}

/// Parses one reply at the start of `buf`; returns it and the number of bytes it used.
pub fn parse(buf: &[u8]) -> Result<(Frame<'_>, usize), ParseError> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], start: usize) -> Result<(Frame<'_>, usize), ParseError> {
    let Some(&kind) = buf.get(start) else {
        return Err(ParseError::Incomplete);
    };
    let (line, after_line) = line_at(buf, start + 1)?;
    let invalid = ParseError::Invalid { offset: start };
    match kind {
        b'+' => Ok((Frame::Simple(line), after_line - start)),
        b'-' => Ok((Frame::Error(line), after_line - start)),
        b':' => Ok((
            Frame::Integer(parse_int(line).ok_or(invalid)?),
            after_line - start,
        )),
        b'_' => Ok((Frame::Bulk(None), after_line - start)),
        b'$' => {
            let len = parse_int(line).ok_or(invalid)?;
            if len < 0 {
                return Ok((Frame::Bulk(None), after_line - start));
            }
            let len = len as usize;
            let end = after_line + len;
            if buf.len() < end + 2 {
                return Err(ParseError::Incomplete);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ParseError::Invalid { offset: end });
            }
            Ok((Frame::Bulk(Some(&buf[after_line..end])), end + 2 - start))
        }
        b'*' => {
            let len = parse_int(line).ok_or(invalid)?;
            if len < 0 {
                return Ok((Frame::Array(None), after_line - start));
            }
            let mut items = Vec::with_capacity((len as usize).min(1024));
            let mut pos = after_line;
            for _ in 0..len {
                let (item, used) = parse_at(buf, pos)?;
                items.push(item);
                pos += used;
            }
            Ok((Frame::Array(Some(items)), pos - start))
        }
        _ => Err(invalid),
    }
}
