//! `Tuple`: an immutable MessagePack array in one reference-counted allocation.
//!
//! Indexes hold tuples by pointer, so the handle is one machine word, and the block is
//! an 8-byte header (a 32-bit atomic count and a 32-bit length) then the bytes: a small tuple
//! fits a 32-byte malloc chunk, where a `ThinArc` header (16 bytes) needed 48. It is
//! `Send + Sync` so that a snapshot can take a consistent set of tuples on the Lua thread
//! and write them from another thread.

use crate::client_error;
use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use super::errcode::{ER_INVALID_MSGPACK, ER_TUPLE_NOT_ARRAY};
use super::error::ClientError;
use super::mp::{self, Mp};

#[repr(C)]
struct Header {
    refs: AtomicU32,
    len: u32,
}

const HEADER: usize = std::mem::size_of::<Header>();

pub struct Tuple(NonNull<Header>);

// Safety: the bytes never change after creation and the count is atomic, as in Arc.
unsafe impl Send for Tuple {}
unsafe impl Sync for Tuple {}

fn layout(len: usize) -> Layout {
    // Tuples are at most 4 GB (the length is a u32); the alignment is the header's.
    Layout::from_size_align(HEADER + len, std::mem::align_of::<Header>()).unwrap_or(Layout::new::<Header>())
}

impl Clone for Tuple {
    #[inline]
    fn clone(&self) -> Tuple {
        // Safety: the header lives while any handle does.
        let refs = unsafe { &self.0.as_ref().refs };
        if refs.fetch_add(1, Ordering::Relaxed) == u32::MAX {
            std::process::abort();
        }
        Tuple(self.0)
    }
}

impl Drop for Tuple {
    #[inline]
    fn drop(&mut self) {
        // Safety: as in Arc: the last handle frees the block, after every other handle's
        // use of it (the Release/Acquire pair).
        unsafe {
            if self.0.as_ref().refs.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            fence(Ordering::Acquire);
            let len = self.0.as_ref().len as usize;
            alloc::dealloc(self.0.as_ptr() as *mut u8, layout(len));
        }
    }
}

impl Tuple {
    /// A tuple from encoded MessagePack, checked to be exactly one array.
    pub fn new(data: &[u8]) -> Result<Tuple, ClientError> {
        match mp::read(data, 0) {
            Ok((Mp::Array(_), _)) => {}
            Ok(_) => return Err(client_error!(ER_TUPLE_NOT_ARRAY)),
            Err(_) => return Err(client_error!(ER_INVALID_MSGPACK, "tuple")),
        }
        match mp::skip(data, 0) {
            Ok(end) if end == data.len() => Ok(Tuple::from_trusted(data)),
            _ => Err(client_error!(ER_INVALID_MSGPACK, "tuple")),
        }
    }

    /// A tuple from bytes already known to be one valid MessagePack array.
    pub fn from_trusted(data: &[u8]) -> Tuple {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX) as usize;
        let layout = layout(len);
        // Safety: the layout is non-zero sized; the block is initialised before use.
        unsafe {
            let ptr = alloc::alloc(layout) as *mut Header;
            let Some(ptr) = NonNull::new(ptr) else {
                alloc::handle_alloc_error(layout)
            };
            ptr.as_ptr().write(Header {
                refs: AtomicU32::new(1),
                len: len as u32,
            });
            std::ptr::copy_nonoverlapping(data.as_ptr(), (ptr.as_ptr() as *mut u8).add(HEADER), len);
            Tuple(ptr)
        }
    }

    /// The whole tuple as MessagePack.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // Safety: the block holds `len` initialised bytes after the header.
        unsafe {
            let len = self.0.as_ref().len as usize;
            std::slice::from_raw_parts((self.0.as_ptr() as *const u8).add(HEADER), len)
        }
    }

    pub fn len(&self) -> u32 {
        mp::read_array(self.data(), 0).map(|(n, _)| n).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw MessagePack of field `fieldno` (0-based), or None past the end.
    #[inline]
    pub fn field(&self, fieldno: u32) -> Option<&[u8]> {
        let data = self.data();
        // The array header, read inline: field access is on every comparison.
        let (n, mut pos) = match *data.first()? {
            b @ 0x90..=0x9f => ((b & 0x0f) as u32, 1),
            _ => mp::read_array(data, 0)?,
        };
        if fieldno >= n {
            return None;
        }
        for _ in 0..fieldno {
            pos = mp::skip(data, pos).ok()?;
        }
        let end = mp::skip(data, pos).ok()?;
        Some(&data[pos..end])
    }

    /// The bytes from the start of field `fieldno` to the end of the tuple: enough for
    /// comparisons, which read only the value's own prefix, and cheaper than `field`.
    #[inline]
    pub fn field_from(&self, fieldno: u32) -> Option<&[u8]> {
        let data = self.data();
        let (n, mut pos) = match *data.first()? {
            b @ 0x90..=0x9f => ((b & 0x0f) as u32, 1),
            _ => mp::read_array(data, 0)?,
        };
        if fieldno >= n {
            return None;
        }
        for _ in 0..fieldno {
            pos = mp::skip(data, pos).ok()?;
        }
        data.get(pos..)
    }

    /// The raw MessagePack of every field, in order.
    pub fn fields(&self) -> Fields<'_> {
        let data = self.data();
        let (left, pos) = mp::read_array(data, 0).unwrap_or((0, data.len()));
        Fields { data, pos, left }
    }

    /// True if both handles point at the same allocation (the same stored tuple).
    pub fn ptr_eq(&self, other: &Tuple) -> bool {
        self.0 == other.0
    }

    /// Asks the CPU to bring the header into cache, for a handle about to be dropped: a
    /// replaced tuple's count has not been touched since it was stored.
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        // Safety: a prefetch is a hint; it never faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(self.0.as_ptr() as *const i8);
        }
    }

    /// Bytes of memory the tuple takes, as box.slab.info would count it.
    pub fn bsize(&self) -> usize {
        self.data().len()
    }
}

pub struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
    left: u32,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let end = mp::skip(self.data, self.pos).ok()?;
        let field = &self.data[self.pos..end];
        self.pos = end;
        self.left -= 1;
        Some(field)
    }
}

impl fmt::Debug for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tuple({:02x?})", self.data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: &rmpv::Value) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).unwrap();
        buf
    }

    #[test]
    fn fields_are_read_in_place() {
        let v = rmpv::Value::Array(vec![1.into(), "two".into(), rmpv::Value::Array(vec![3.into()])]);
        let t = Tuple::new(&encode(&v)).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.field(1), Some(&b"\xa3two"[..]));
        assert_eq!(t.field(2), Some(&b"\x91\x03"[..]));
        assert_eq!(t.field(3), None);
        assert_eq!(t.fields().count(), 3);
        assert_eq!(std::mem::size_of::<Tuple>(), 8);
    }

    #[test]
    fn handles_share_one_block_across_threads() {
        let t = Tuple::new(&[0x92, 0x01, 0xa1, b'x']).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let c = t.clone();
                        assert_eq!(c.data(), &[0x92, 0x01, 0xa1, b'x']);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        // Safety (test): only this handle is left.
        assert_eq!(unsafe { t.0.as_ref().refs.load(Ordering::Relaxed) }, 1);
        assert_eq!(Tuple::from_trusted(&[0x90]).data(), &[0x90]);
    }

    #[test]
    fn non_arrays_and_garbage_are_rejected() {
        assert_eq!(
            Tuple::new(&[0x01]).unwrap_err().message,
            "Tuple/Key must be MsgPack array"
        );
        assert_eq!(Tuple::new(&[0x92, 0x01]).unwrap_err().code, ER_INVALID_MSGPACK);
        assert_eq!(Tuple::new(&[0x91, 0x01, 0x01]).unwrap_err().code, ER_INVALID_MSGPACK);
    }
}
