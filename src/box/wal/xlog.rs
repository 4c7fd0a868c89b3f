//! xlog and snap files, byte-compatible with Tarantool 2.6 (`src/box/xlog.c`).
//!
//! A file is a text meta block, then blocks, then (on a clean close) the EOF marker:
//!
//! ```text
//! XLOG\n0.13\nVersion: ...\nInstance: <uuid>\nVClock: {1: 4}\nPrevVClock: {}\n\n
//! d5 ba 0b ab | uint len | uint 0 | uint crc32c | fixstr padding   (19 bytes, "fixheader")
//! rows: header map + body, back to back, `len` bytes
//! ...
//! d5 10 ad ed
//! ```
//!
//! The uints are MessagePack in their shortest form, as `mp_encode_uint` writes them, and the
//! padding is a fixstr of zero bytes that makes the fixheader exactly 19 bytes. The "previous
//! block CRC" is written as 0 and never checked (Tarantool: "not used now"). The data CRC is
//! CRC32-C seeded with 0, without final inversion. A block marked `d5 ba 0b ba` holds a zstd
//! frame instead of rows (Tarantool compresses blocks of 2 KB or more); we read those and
//! write plain blocks only. A block may hold several transactions (Tarantool flushes a block
//! per WAL write batch, or once it passes 128 KB at a transaction boundary); a transaction
//! never spans blocks.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::mp::{put_uint, Cursor};
use super::row::RowRef;
use super::vclock::Vclock;
use super::zstd;
use crate::modules::digest::crc32c_update;

pub const ROW_MARKER: [u8; 4] = [0xd5, 0xba, 0x0b, 0xab];
pub const ZROW_MARKER: [u8; 4] = [0xd5, 0xba, 0x0b, 0xba];
pub const EOF_MARKER: [u8; 4] = [0xd5, 0x10, 0xad, 0xed];
pub const FIXHEADER_SIZE: usize = 19;
/// A block is written once it holds this much, at the next transaction boundary.
pub const BLOCK_THRESHOLD: usize = 128 * 1024;
/// Tarantool's IPROTO_BODY_LEN_MAX: a longer block length is corruption.
const BLOCK_LEN_MAX: u64 = 2_147_483_648;
/// Tarantool's XLOG_META_LEN_MAX (1024 + VCLOCK_STR_LEN_MAX).
const META_LEN_MAX: usize = 1024 + 834;
pub const INPROGRESS_SUFFIX: &str = ".inprogress";
/// What we write as `Version:`; Tarantool writes its PACKAGE_VERSION there and never reads it.
pub const WRITER_VERSION: &str = "2.6.0-0-node";
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Xlog,
    Snap,
}

impl FileKind {
    pub fn filetype(self) -> &'static str {
        match self {
            FileKind::Xlog => "XLOG",
            FileKind::Snap => "SNAP",
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            FileKind::Xlog => "xlog",
            FileKind::Snap => "snap",
        }
    }
}

/// `dir/%020lld.ext`: files are named by the vclock signature at their start.
pub fn file_name(dir: &Path, signature: i64, kind: FileKind) -> PathBuf {
    dir.join(format!("{signature:020}.{}", kind.ext()))
}

pub fn inprogress_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(INPROGRESS_SUFFIX);
    PathBuf::from(s)
}

/// Files of one kind in `dir`, sorted by signature. A name that does not parse is skipped
/// (Tarantool warns and skips too); `.inprogress` files are not listed.
pub fn list_files(dir: &Path, kind: FileKind) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(kind.ext()).and_then(|s| s.strip_suffix('.')) else {
            continue;
        };
        if let Ok(sig) = stem.parse::<i64>() {
            v.push((sig, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

/// A file-level problem: which file, where in it, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlogError {
    pub path: PathBuf,
    pub offset: Option<u64>,
    pub message: String,
}

impl XlogError {
    pub fn new(path: &Path, offset: Option<u64>, message: impl Into<String>) -> XlogError {
        XlogError {
            path: path.to_owned(),
            offset,
            message: message.into(),
        }
    }

    pub fn io(path: &Path, what: &str, e: &io::Error) -> XlogError {
        XlogError::new(path, None, format!("{what}: {e}"))
    }
}

impl fmt::Display for XlogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{}: at offset {o}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for XlogError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// "XLOG" or "SNAP".
    pub filetype: String,
    pub version: Option<String>,
    pub instance_uuid: Uuid,
    pub vclock: Vclock,
    /// The vclock of the previous xlog, so recovery can detect a missing file.
    pub prev_vclock: Option<Vclock>,
}

impl Meta {
    pub fn new(kind: FileKind, instance_uuid: Uuid, vclock: Vclock, prev_vclock: Option<Vclock>) -> Meta {
        Meta {
            filetype: kind.filetype().to_string(),
            version: Some(WRITER_VERSION.to_string()),
            instance_uuid,
            vclock,
            prev_vclock,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "{}\n0.13\nVersion: {}\nInstance: {}\nVClock: {}\n",
            self.filetype,
            self.version.as_deref().unwrap_or(WRITER_VERSION),
            self.instance_uuid.hyphenated(),
            self.vclock
        );
        if let Some(p) = &self.prev_vclock {
            s.push_str(&format!("PrevVClock: {p}\n"));
        }
        s.push('\n');
        s.into_bytes()
    }

    /// Parses the meta block at the start of `buf`: `Ok(None)` if it is not complete yet,
    /// else the meta and its length. Unknown keys are ignored, as Tarantool does.
    pub fn parse(buf: &[u8]) -> Result<Option<(Meta, usize)>, String> {
        let Some(end) = buf.windows(2).position(|w| w == b"\n\n") else {
            return if buf.len() >= META_LEN_MAX {
                Err("no end of meta block".into())
            } else {
                Ok(None)
            };
        };
        let text = std::str::from_utf8(&buf[..end + 1]).map_err(|_| "meta block is not text".to_string())?;
        let mut lines = text.split_terminator('\n');
        let filetype = lines.next().unwrap_or("");
        if filetype.is_empty() || filetype.len() > 31 {
            return Err("failed to parse xlog type string".into());
        }
        match lines.next() {
            Some("0.12") | Some("0.13") => {}
            Some(v) => return Err(format!("unsupported file format version {v}")),
            None => return Err("failed to parse xlog version string".into()),
        }
        let mut meta = Meta {
            filetype: filetype.to_string(),
            version: None,
            instance_uuid: Uuid::nil(),
            vclock: Vclock::new(),
            prev_vclock: None,
        };
        for line in lines {
            let (key, val) = line.split_once(':').ok_or("can't extract meta value")?;
            let val = val.trim_start_matches([' ', '\t']);
            match key {
                "Instance" | "Server" => {
                    if val.len() != 36 {
                        return Err("can't parse instance UUID".into());
                    }
                    meta.instance_uuid = Uuid::parse_str(val).map_err(|_| "can't parse instance UUID")?;
                }
                "VClock" => meta.vclock = val.parse().map_err(|e| format!("{e}"))?,
                "PrevVClock" => meta.prev_vclock = Some(val.parse().map_err(|e| format!("{e}"))?),
                "Version" => meta.version = Some(val.to_string()),
                _ => {}
            }
        }
        Ok(Some((meta, end + 2)))
    }
}

/// The 19-byte block header.
pub fn fixheader(magic: [u8; 4], len: usize, crc: u32) -> [u8; FIXHEADER_SIZE] {
    let mut h = Vec::with_capacity(FIXHEADER_SIZE);
    h.extend_from_slice(&magic);
    put_uint(&mut h, len as u64);
    put_uint(&mut h, 0);
    put_uint(&mut h, crc as u64);
    // At most 4 + 5 + 1 + 5 = 15 bytes so far: the padding is a fixstr of at least 3 zeros.
    let pad = FIXHEADER_SIZE - h.len();
    h.push(0xa0 | (pad - 1) as u8);
    h.resize(FIXHEADER_SIZE, 0);
    let mut out = [0u8; FIXHEADER_SIZE];
    out.copy_from_slice(&h);
    out
}

struct FixHeader {
    compressed: bool,
    len: u64,
    crc: u32,
}

fn parse_fixheader(h: &[u8]) -> Result<FixHeader, Damage> {
    let compressed = match h.get(..4) {
        Some(m) if m == ROW_MARKER => false,
        Some(m) if m == ZROW_MARKER => true,
        _ => return Err(Damage::BadMagic),
    };
    let body = h.get(4..FIXHEADER_SIZE).ok_or(Damage::Short)?;
    let mut c = Cursor::new(body);
    let len = c
        .read_uint()
        .map_err(|_| Damage::BrokenHeader("broken fixheader length"))?;
    if len > BLOCK_LEN_MAX {
        return Err(Damage::BrokenHeader("too large fixheader length"));
    }
    c.read_uint()
        .map_err(|_| Damage::BrokenHeader("broken fixheader crc32p"))?;
    let crc = c
        .read_uint()
        .map_err(|_| Damage::BrokenHeader("broken fixheader crc32c"))?;
    let crc = u32::try_from(crc).map_err(|_| Damage::BrokenHeader("broken fixheader crc32c"))?;
    if !c.is_empty() && (c.skip().is_err() || !c.is_empty()) {
        return Err(Damage::BrokenHeader("broken fixheader padding"));
    }
    Ok(FixHeader { compressed, len, crc })
}

/// Appends blocks to a file. Each write goes at the end of the last good block (`pwrite`), so
/// a failed write leaves nothing behind once the file is cut back.
pub struct XlogWriter {
    file: File,
    path: PathBuf,
    meta: Meta,
    offset: u64,
    block: Vec<u8>,
    block_rows: u64,
    rows: u64,
    /// Opened with O_DSYNC: each block write returns once it is on disk.
    dsync: bool,
    /// End of the space reserved with fallocate (see `preallocate`).
    allocated: u64,
    no_fallocate: bool,
    /// Blocks of `COMPRESS_THRESHOLD` bytes and more are written zstd-compressed, into this.
    compress: bool,
    zblock: Vec<u8>,
}

/// Tarantool's `XLOG_TX_COMPRESS_THRESHOLD`: smaller blocks are written as they are.
const COMPRESS_THRESHOLD: usize = 2048;

impl XlogWriter {
    /// Creates `path` with `meta`, failing if `path` or its `.inprogress` twin exists. The file
    /// is written as `path.inprogress`; xlogs are renamed right after the meta is written
    /// (Tarantool: so that a relay never sees a file without meta), snapshots keep the suffix
    /// until `rename_inprogress` once they are complete.
    pub fn create(path: &Path, meta: &Meta, keep_inprogress: bool) -> Result<XlogWriter, XlogError> {
        if path.exists() {
            return Err(XlogError::new(path, None, "file already exists"));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| XlogError::io(dir, "failed to create directory", &e))?;
        }
        let tmp = inprogress_name(path);
        if !keep_inprogress {
            // An xlog is renamed right after its meta is written: a leftover `.inprogress` one
            // holds no rows (a crash in between) and must not block the name forever.
            let _ = std::fs::remove_file(&tmp);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| XlogError::io(&tmp, "failed to create file", &e))?;
        let head = meta.encode();
        if let Err(e) = file.write_all_at(&head, 0) {
            let _ = std::fs::remove_file(&tmp);
            return Err(XlogError::io(&tmp, "failed to write xlog meta", &e));
        }
        let mut w = XlogWriter {
            file,
            path: tmp,
            meta: meta.clone(),
            offset: head.len() as u64,
            block: Vec::new(),
            block_rows: 0,
            rows: 0,
            dsync: false,
            allocated: 0,
            no_fallocate: false,
            compress: false,
            zblock: Vec::new(),
        };
        if !keep_inprogress {
            w.rename_inprogress()?;
        }
        Ok(w)
    }

    /// Opens an existing file to append to it, dropping its EOF marker (Tarantool reopens the
    /// xlog named by the current vclock, e.g. the empty one it makes at shutdown).
    pub fn open_append(path: &Path) -> Result<XlogWriter, XlogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| XlogError::io(path, "failed to open file", &e))?;
        let len = file
            .metadata()
            .map_err(|e| XlogError::io(path, "failed to stat file", &e))?
            .len();
        let mut head = vec![0u8; META_LEN_MAX.min(len as usize)];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| XlogError::io(path, "failed to read file", &e))?;
        let meta = match Meta::parse(&head) {
            Ok(Some((m, _))) => m,
            Ok(None) => return Err(XlogError::new(path, None, "unexpected end of file in meta")),
            Err(e) => return Err(XlogError::new(path, Some(0), e)),
        };
        let mut offset = len;
        let mut tail = [0u8; 4];
        if len >= 4 && file.read_exact_at(&mut tail, len - 4).is_ok() && tail == EOF_MARKER {
            offset = len - 4;
            file.set_len(offset)
                .map_err(|e| XlogError::io(path, "failed to truncate file", &e))?;
        }
        Ok(XlogWriter {
            file,
            path: path.to_owned(),
            meta,
            offset,
            block: Vec::new(),
            block_rows: 0,
            rows: 0,
            dsync: false,
            allocated: 0,
            no_fallocate: false,
            compress: false,
            zblock: Vec::new(),
        })
    }

    /// From now on every block write returns once it is on disk (O_DSYNC, as Tarantool
    /// opens its xlogs in `wal_mode = 'fsync'`): one system call per write instead of a
    /// write and an fdatasync. What the file holds so far is synced first.
    pub fn use_dsync(&mut self) -> Result<(), XlogError> {
        self.sync()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(&self.path)
            .map_err(|e| XlogError::io(&self.path, "failed to open file", &e))?;
        self.file = file;
        self.dsync = true;
        Ok(())
    }

    /// From now on blocks of 2 KB and more are written zstd-compressed, as Tarantool writes
    /// them: a WAL block of similar rows shrinks severalfold, and so does the synchronous
    /// write of it in `fsync` mode.
    pub fn compress_blocks(&mut self) {
        self.compress = true;
    }

    /// True if block writes are synchronous (see [`use_dsync`](Self::use_dsync)).
    pub fn is_dsync(&self) -> bool {
        self.dsync
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// End of the last block written.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Rows in blocks written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows and bytes waiting in the current block.
    pub fn pending_rows(&self) -> u64 {
        self.block_rows
    }

    pub fn pending_bytes(&self) -> usize {
        self.block.len().saturating_sub(FIXHEADER_SIZE)
    }

    pub fn add_row(&mut self, row: &RowRef) {
        if self.block.is_empty() {
            self.block.resize(FIXHEADER_SIZE, 0);
        }
        row.encode(&mut self.block);
        self.block_rows += 1;
    }

    pub fn discard_pending(&mut self) {
        self.block.clear();
        self.block_rows = 0;
    }

    /// Writes the current block; returns its size. On failure the block is dropped and the
    /// file is cut back to the last good block.
    pub fn flush(&mut self) -> Result<u64, XlogError> {
        if self.block.len() <= FIXHEADER_SIZE {
            self.discard_pending();
            return Ok(0);
        }
        let data_len = self.block.len() - FIXHEADER_SIZE;
        let compressed = self.compress && data_len >= COMPRESS_THRESHOLD;
        if compressed {
            // Tarantool's compressed block: the same fixheader, ZROW marker, over a zstd frame.
            self.zblock.clear();
            self.zblock.resize(FIXHEADER_SIZE, 0);
            zstd::compress(&self.block[FIXHEADER_SIZE..], &mut self.zblock);
            let crc = crc32c_update(0, &self.zblock[FIXHEADER_SIZE..]);
            let header = fixheader(ZROW_MARKER, self.zblock.len() - FIXHEADER_SIZE, crc);
            self.zblock[..FIXHEADER_SIZE].copy_from_slice(&header);
        } else {
            let crc = crc32c_update(0, &self.block[FIXHEADER_SIZE..]);
            self.block[..FIXHEADER_SIZE].copy_from_slice(&fixheader(ROW_MARKER, data_len, crc));
        }
        let n = if compressed {
            self.zblock.len()
        } else {
            self.block.len()
        } as u64;
        self.preallocate(n);
        let block = if compressed { &self.zblock } else { &self.block };
        let res = self.file.write_all_at(block, self.offset);
        let rows = self.block_rows;
        self.discard_pending();
        match res {
            Ok(()) => {
                self.offset += n;
                self.rows += rows;
                Ok(n)
            }
            Err(e) => {
                let _ = self.file.set_len(self.offset);
                Err(XlogError::io(&self.path, "failed to write", &e))
            }
        }
    }

    /// Reserves disk space past the end in 1 MB steps (Tarantool's `wal_fallocate`), so a
    /// write does not also allocate blocks; the file size stays what was written, and
    /// `close` gives the rest back. Best effort: without it writes just allocate as they go.
    fn preallocate(&mut self, n: u64) {
        const STEP: u64 = 1 << 20;
        let end = self.offset + n;
        if self.no_fallocate || end <= self.allocated {
            return;
        }
        let from = self.allocated.max(self.offset);
        let len = (end - from).max(STEP);
        // Safety: fallocate on our own open descriptor; it only reserves blocks.
        let rc = unsafe {
            libc::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&self.file),
                libc::FALLOC_FL_KEEP_SIZE,
                from as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            self.allocated = from + len;
        } else {
            // Not supported here, or no space (the write will say so).
            self.no_fallocate = true;
        }
    }

    /// `fdatasync`: the data and the size, not the other metadata.
    pub fn sync(&self) -> Result<(), XlogError> {
        self.file
            .sync_data()
            .map_err(|e| XlogError::io(&self.path, "fdatasync failed", &e))
    }

    /// Cuts the file back to `offset` (a block boundary this writer reported), e.g. when an
    /// fsync failed and the blocks after it must not survive.
    pub fn truncate(&mut self, offset: u64) -> Result<(), XlogError> {
        self.discard_pending();
        self.file
            .set_len(offset)
            .map_err(|e| XlogError::io(&self.path, "failed to truncate", &e))?;
        self.offset = offset;
        Ok(())
    }

    pub fn rename_inprogress(&mut self) -> Result<(), XlogError> {
        let Some(name) = self.path.to_str().and_then(|s| s.strip_suffix(INPROGRESS_SUFFIX)) else {
            return Ok(());
        };
        let to = PathBuf::from(name);
        std::fs::rename(&self.path, &to).map_err(|e| XlogError::io(&self.path, "failed to rename", &e))?;
        self.path = to;
        Ok(())
    }

    /// Writes what is pending, the EOF marker, and fsyncs.
    pub fn close(mut self) -> Result<PathBuf, XlogError> {
        self.flush()?;
        // Whatever a failed write left past the last block must not end up before the marker.
        self.file
            .set_len(self.offset)
            .map_err(|e| XlogError::io(&self.path, "failed to truncate", &e))?;
        self.file
            .write_all_at(&EOF_MARKER, self.offset)
            .map_err(|e| XlogError::io(&self.path, "failed to write EOF marker", &e))?;
        self.file
            .sync_all()
            .map_err(|e| XlogError::io(&self.path, "fsync failed", &e))?;
        Ok(self.path)
    }
}

/// What is wrong at some offset of a file being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Neither a block marker nor the EOF marker.
    BadMagic,
    BrokenHeader(&'static str),
    /// The file ends inside the fixheader or the block.
    Short,
    Checksum,
    Decompress(String),
    /// Bytes after the EOF marker.
    AfterEof,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::BadMagic => f.write_str("invalid block magic"),
            Damage::BrokenHeader(s) => f.write_str(s),
            Damage::Short => f.write_str("file ends inside a block"),
            Damage::Checksum => f.write_str("block checksum mismatch"),
            Damage::Decompress(s) => write!(f, "can't decompress block: {s}"),
            Damage::AfterEof => f.write_str("data after EOF marker"),
        }
    }
}

pub struct Block<'a> {
    /// File offset of the fixheader.
    pub offset: u64,
    /// Fixheader and data, as stored.
    pub size: u64,
    /// The rows, decompressed if need be.
    pub data: &'a [u8],
}

impl<'a> Block<'a> {
    /// Decodes the rows one after another; an error ends the block.
    pub fn rows(&self) -> Rows<'a> {
        Rows {
            data: self.data,
            pos: 0,
        }
    }
}

pub struct Rows<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Rows<'a> {
    type Item = Result<RowRef<'a>, super::mp::MpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        match RowRef::decode(&self.data[self.pos..]) {
            Ok((r, n)) => {
                self.pos += n;
                Some(Ok(r))
            }
            Err(mut e) => {
                e.offset += self.pos;
                self.pos = self.data.len();
                Some(Err(e))
            }
        }
    }
}

pub enum Next<'a> {
    Block(Block<'a>),
    /// End of file; `marker` tells whether the EOF marker closed it.
    End {
        marker: bool,
    },
    Damaged {
        offset: u64,
        damage: Damage,
    },
}

/// A valid place to resume reading after damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resync {
    Block(u64),
    EofMarker(u64),
}

/// Reads an xlog or snap file block by block through one buffer: a block's rows are borrowed
/// from it, so reading allocates nothing per row.
pub struct XlogReader {
    path: PathBuf,
    file: File,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    zbuf: Vec<u8>,
    meta: Meta,
    data_start: u64,
    offset: u64,
    /// Read-ahead size: small while only the meta is wanted.
    chunk: usize,
}

impl XlogReader {
    pub fn open(path: &Path) -> Result<XlogReader, XlogError> {
        let file = File::open(path).map_err(|e| XlogError::io(path, "failed to open file", &e))?;
        let len = file
            .metadata()
            .map_err(|e| XlogError::io(path, "failed to stat file", &e))?
            .len();
        let mut r = XlogReader {
            path: path.to_owned(),
            file,
            len,
            buf: Vec::new(),
            buf_start: 0,
            zbuf: Vec::new(),
            meta: Meta::new(FileKind::Xlog, Uuid::nil(), Vclock::new(), None),
            data_start: 0,
            offset: 0,
            chunk: META_LEN_MAX,
        };
        let head = r
            .bytes_at(0, META_LEN_MAX)
            .map_err(|e| XlogError::io(path, "failed to read file", &e))?;
        match Meta::parse(head) {
            Ok(Some((meta, n))) => {
                r.meta = meta;
                r.data_start = n as u64;
                r.offset = n as u64;
                r.chunk = READ_CHUNK;
                Ok(r)
            }
            Ok(None) => Err(XlogError::new(path, Some(0), "unexpected end of file in meta")),
            Err(e) => Err(XlogError::new(path, Some(0), e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Size of the file when it was opened (or last cut).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == self.data_start
    }

    /// Where the first block starts.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// Where the next block is read from.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn seek(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// Up to `n` bytes at `off` (fewer at the end of the file), keeping one read-ahead buffer.
    fn bytes_at(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        if off >= self.len {
            return Ok(&[]);
        }
        let end = off.saturating_add(n as u64).min(self.len);
        let have_end = self.buf_start + self.buf.len() as u64;
        if off < self.buf_start || end > have_end {
            if off >= self.buf_start && off <= have_end {
                let drop = (off - self.buf_start) as usize;
                self.buf.drain(..drop);
            } else {
                self.buf.clear();
            }
            self.buf_start = off;
            let want = ((end - off) as usize).max(self.chunk).min((self.len - off) as usize);
            let mut have = self.buf.len();
            self.buf.resize(want, 0);
            while have < want {
                match self.file.read_at(&mut self.buf[have..], off + have as u64) {
                    Ok(0) => break,
                    Ok(k) => have += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(have);
                        return Err(e);
                    }
                }
            }
            self.buf.truncate(have);
        }
        let from = (off - self.buf_start) as usize;
        let to = ((end - self.buf_start) as usize).min(self.buf.len());
        Ok(&self.buf[from.min(to)..to])
    }

    /// What the buffer holds from `off` on, reading only when fewer than 4 bytes are there.
    fn window(&mut self, off: u64) -> io::Result<&[u8]> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if off >= self.buf_start && off + 4 <= have_end {
            return Ok(&self.buf[(off - self.buf_start) as usize..]);
        }
        self.bytes_at(off, READ_CHUNK)
    }

    /// Checks the block at `off` without moving: its total size, or what is wrong with it.
    fn check_block(&mut self, off: u64) -> io::Result<Result<(FixHeader, u64), Damage>> {
        let len = self.len;
        let h = self.bytes_at(off, FIXHEADER_SIZE)?;
        if h.len() < FIXHEADER_SIZE {
            // A marker cut short is a torn write; other short garbage is still garbage.
            let m = &h[..h.len().min(4)];
            let torn = [ROW_MARKER, ZROW_MARKER, EOF_MARKER].iter().any(|k| k.starts_with(m));
            return Ok(Err(if torn { Damage::Short } else { Damage::BadMagic }));
        }
        let fh = match parse_fixheader(h) {
            Ok(fh) => fh,
            Err(d) => return Ok(Err(d)),
        };
        let total = FIXHEADER_SIZE as u64 + fh.len;
        if off + total > len {
            return Ok(Err(Damage::Short));
        }
        let data = self.bytes_at(off + FIXHEADER_SIZE as u64, fh.len as usize)?;
        if crc32c_update(0, data) != fh.crc {
            return Ok(Err(Damage::Checksum));
        }
        Ok(Ok((fh, total)))
    }

    /// The next block, the end of the file, or what is wrong at the current offset (the offset
    /// stays there: call `resync` or `seek` to go on).
    pub fn next_block(&mut self) -> io::Result<Next<'_>> {
        let off = self.offset;
        if off >= self.len {
            return Ok(Next::End { marker: false });
        }
        if self.bytes_at(off, 4)? == EOF_MARKER {
            if off + 4 == self.len {
                self.offset = self.len;
                return Ok(Next::End { marker: true });
            }
            return Ok(Next::Damaged {
                offset: off + 4,
                damage: Damage::AfterEof,
            });
        }
        let (fh, total) = match self.check_block(off)? {
            Ok(x) => x,
            Err(damage) => return Ok(Next::Damaged { offset: off, damage }),
        };
        let start = (off + FIXHEADER_SIZE as u64 - self.buf_start) as usize;
        let Some(raw) = self.buf.get(start..start + fh.len as usize) else {
            // The file shrank under us.
            return Ok(Next::Damaged {
                offset: off,
                damage: Damage::Short,
            });
        };
        let data: &[u8] = if fh.compressed {
            if let Err(e) = zstd::decompress(raw, &mut self.zbuf) {
                return Ok(Next::Damaged {
                    offset: off,
                    damage: Damage::Decompress(e.0.to_string()),
                });
            }
            &self.zbuf
        } else {
            raw
        };
        self.offset = off + total;
        Ok(Next::Block(Block {
            offset: off,
            size: total,
            data,
        }))
    }

    /// The first offset after `from` where a complete block with a good checksum starts, or an
    /// EOF marker that ends the file. `None`: nothing valid follows (a torn tail).
    pub fn resync(&mut self, from: u64) -> io::Result<Option<Resync>> {
        let mut at = from + 1;
        while at + 4 <= self.len {
            let window = self.window(at)?;
            let hit = window
                .windows(4)
                .position(|w| w[..3] == ROW_MARKER[..3] && (w[3] == 0xab || w[3] == 0xba));
            let eof = window.windows(4).position(|w| w == EOF_MARKER);
            let scanned = window.len().saturating_sub(3).max(1) as u64;
            let cand = match (hit, eof) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(i) = cand else {
                at += scanned;
                continue;
            };
            let pos = at + i as u64;
            if self.bytes_at(pos, 4)? == EOF_MARKER {
                if pos + 4 == self.len {
                    return Ok(Some(Resync::EofMarker(pos)));
                }
            } else if self.check_block(pos)?.is_ok() {
                return Ok(Some(Resync::Block(pos)));
            }
            at = pos + 1;
        }
        Ok(None)
    }

    /// Cuts the file at `offset` (recovery drops a torn tail).
    pub fn truncate(&mut self, offset: u64) -> Result<(), XlogError> {
        let f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| XlogError::io(&self.path, "failed to open file for truncation", &e))?;
        f.set_len(offset)
            .map_err(|e| XlogError::io(&self.path, "failed to truncate", &e))?;
        f.sync_all()
            .map_err(|e| XlogError::io(&self.path, "fsync failed", &e))?;
        self.len = offset;
        self.buf.clear();
        self.buf_start = 0;
        self.offset = self.offset.min(offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::row::{Row, IPROTO_INSERT};
    use super::super::testutil::tmpdir;
    use super::*;

    fn tarantool_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/box/tarantool-2.6")
    }

    fn row(lsn: i64) -> Row {
        Row {
            kind: IPROTO_INSERT,
            replica_id: 1,
            lsn,
            timestamp: 1_700_000_000.5,
            tsn: lsn,
            is_commit: true,
            body: Row::replace_body(512, &[0x92, lsn as u8 & 0x7f, 0xa1, b'x']),
            ..Row::default()
        }
    }

    fn read_all(path: &Path) -> (Vec<Row>, bool) {
        let mut r = XlogReader::open(path).unwrap();
        let mut rows = Vec::new();
        loop {
            match r.next_block().unwrap() {
                Next::Block(b) => rows.extend(b.rows().map(|x| x.unwrap().to_row())),
                Next::End { marker } => return (rows, marker),
                Next::Damaged { offset, damage } => panic!("{}: {offset}: {damage}", path.display()),
            }
        }
    }

    #[test]
    fn fixheader_layout_is_tarantools() {
        // From a Tarantool 2.6 xlog: len 40, crc 0x926de9a6.
        let h = fixheader(ROW_MARKER, 40, 0x926de9a6);
        assert_eq!(
            h,
            [0xd5, 0xba, 0x0b, 0xab, 0x28, 0x00, 0xce, 0x92, 0x6d, 0xe9, 0xa6, 0xa7, 0, 0, 0, 0, 0, 0, 0]
        );
        let h = fixheader(ROW_MARKER, 70000, 5);
        assert_eq!(&h[4..12], &[0xce, 0x00, 0x01, 0x11, 0x70, 0x00, 0x05, 0xa7]);
        assert!(parse_fixheader(&h).is_ok());
        let mut bad = h;
        bad[11] = 0xa2; // a padding string that ends before byte 19
        assert!(matches!(parse_fixheader(&bad), Err(Damage::BrokenHeader(_))));
    }

    #[test]
    fn meta_round_trips_and_matches_tarantools_text() {
        let uuid = Uuid::parse_str("cedf3b10-08aa-4f2a-b6c3-80d6c875eff0").unwrap();
        let mut v = Vclock::new();
        v.follow(1, 5);
        let m = Meta::new(FileKind::Xlog, uuid, v, Some(Vclock::new()));
        let text = String::from_utf8(m.encode()).unwrap();
        assert_eq!(
            text,
            "XLOG\n0.13\nVersion: 2.6.0-0-node\nInstance: cedf3b10-08aa-4f2a-b6c3-80d6c875eff0\n\
             VClock: {1: 5}\nPrevVClock: {}\n\n"
        );
        let mut b = m.encode();
        b.extend_from_slice(b"rest");
        assert_eq!(Meta::parse(&b), Ok(Some((m, text.len()))));
        assert_eq!(Meta::parse(b"XLOG\n0.13\n"), Ok(None));
        assert!(Meta::parse(b"XLOG\n0.11\n\n").is_err());
        assert!(Meta::parse(b"XLOG\n0.13\nVClock\n\n").is_err());
        assert!(Meta::parse(b"XLOG\n0.13\nVClock: {1: x}\n\n").is_err());
        assert!(Meta::parse(&[b'x'; 4000]).is_err());
    }

    #[test]
    fn write_then_read_round_trip() {
        let dir = tmpdir("xlog-rt");
        let path = file_name(&dir, 0, FileKind::Xlog);
        let meta = Meta::new(FileKind::Xlog, Uuid::new_v4(), Vclock::new(), None);
        let mut w = XlogWriter::create(&path, &meta, false).unwrap();
        let rows: Vec<Row> = (1..=300).map(row).collect();
        for chunk in rows.chunks(7) {
            for r in chunk {
                w.add_row(&r.as_ref());
            }
            w.flush().unwrap();
        }
        assert_eq!(w.rows(), 300);
        // Space is reserved ahead of the writes, past the file's size...
        use std::os::unix::fs::MetadataExt;
        let open = std::fs::metadata(&path).unwrap();
        assert!(
            open.blocks() * 512 > open.len(),
            "{} blocks for {} bytes",
            open.blocks(),
            open.len()
        );
        assert_eq!(w.close().unwrap(), path);
        assert!(!inprogress_name(&path).exists());
        // ...and given back at close.
        let closed = std::fs::metadata(&path).unwrap();
        assert!(
            closed.blocks() * 512 < closed.len() + 65536,
            "{} blocks left",
            closed.blocks()
        );
        let (back, marker) = read_all(&path);
        assert!(marker);
        assert_eq!(back, rows);
        assert_eq!(XlogReader::open(&path).unwrap().meta(), &meta);
        // Reopening for append drops the EOF marker; closing again restores it.
        let mut w = XlogWriter::open_append(&path).unwrap();
        w.add_row(&row(301).as_ref());
        w.close().unwrap();
        let (back, marker) = read_all(&path);
        assert!(marker);
        assert_eq!(back.len(), 301);
        assert!(XlogWriter::create(&path, &meta, false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The sample directory was made by Tarantool 2.6.0 (see tests/data/box/README.md): DDL,
    /// DML of every kind, a multi-statement transaction with a local row in it, and one of 51
    /// rows that Tarantool compressed.
    #[test]
    fn reads_tarantool_made_files() {
        let dir = tarantool_dir();
        let (rows, marker) = read_all(&file_name(&dir, 7, FileKind::Xlog));
        assert!(marker);
        let lsns: Vec<(u32, i64)> = rows.iter().map(|r| (r.replica_id, r.lsn)).collect();
        assert_eq!(
            &lsns[..7],
            &[(1, 8), (1, 9), (1, 10), (0, 1), (1, 11), (1, 12), (1, 13)]
        );
        assert_eq!(rows.len(), 8 + 51);
        let local = &rows[3];
        assert_eq!((local.group_id, local.tsn, local.is_commit), (1, 9, false));
        let nop = &rows[4];
        assert_eq!((nop.kind, nop.tsn, nop.is_commit, nop.body.len()), (12, 9, true, 0));
        assert!(rows[1..4].iter().all(|r| !r.is_commit && r.tsn == 9));
        let big = &rows[8..];
        assert!(big
            .iter()
            .enumerate()
            .all(|(i, r)| r.lsn == 15 + i as i64 && r.tsn == 15));
        assert!(big.iter().rev().skip(1).all(|r| !r.is_commit) && big[50].is_commit);
        // Every row re-encodes to the bytes Tarantool wrote.
        let mut r = XlogReader::open(&file_name(&dir, 7, FileKind::Xlog)).unwrap();
        while let Next::Block(b) = r.next_block().unwrap() {
            let mut again = Vec::new();
            for row in b.rows() {
                row.unwrap().encode(&mut again);
            }
            assert_eq!(again, b.data);
        }
        let r = XlogReader::open(&file_name(&dir, 7, FileKind::Snap)).unwrap();
        assert_eq!(r.meta().filetype, "SNAP");
        assert_eq!(r.meta().vclock.to_string(), "{1: 7}");
        assert_eq!(r.meta().version.as_deref(), Some("2.6.0-0-g47aa4e01e"));
        let (snap, marker) = read_all(&file_name(&dir, 7, FileKind::Snap));
        assert!(marker);
        // Snapshot rows: INSERTs numbered from 0 with replica id 0, one timestamp.
        assert!(snap
            .iter()
            .enumerate()
            .all(|(i, r)| r.kind == IPROTO_INSERT && r.lsn == i as i64));
        assert!(snap
            .iter()
            .all(|r| r.replica_id == 0 && r.timestamp == snap[0].timestamp));
        let user_row = snap
            .iter()
            .find(|r| r.body[..7] == [0x82, 0x10, 0xce, 0, 0, 2, 0])
            .unwrap();
        assert_eq!(&user_row.body[7..], &[0x21, 0x92, 0x01, 0xa1, b'a']);
        let (rows0, _) = read_all(&file_name(&dir, 0, FileKind::Xlog));
        assert_eq!(
            rows0.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            (1..=7).collect::<Vec<_>>()
        );
        let (empty, marker) = read_all(&file_name(&dir, 66, FileKind::Xlog));
        assert!(empty.is_empty() && marker);
    }

    /// Reading a Tarantool-made xlog and writing its rows back with the same block boundaries
    /// and meta gives the same bytes.
    #[test]
    fn rewriting_a_tarantool_xlog_is_byte_identical() {
        let dir = tmpdir("xlog-rewrite");
        for sig in [0, 66] {
            let orig = file_name(&tarantool_dir(), sig, FileKind::Xlog);
            let mut r = XlogReader::open(&orig).unwrap();
            let copy = file_name(&dir, sig, FileKind::Xlog);
            let mut w = XlogWriter::create(&copy, r.meta(), false).unwrap();
            while let Next::Block(b) = r.next_block().unwrap() {
                for row in b.rows() {
                    w.add_row(&row.unwrap());
                }
                w.flush().unwrap();
            }
            w.close().unwrap();
            assert!(std::fs::read(&orig).unwrap() == std::fs::read(&copy).unwrap(), "{sig}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Tarantool's own reader accepts our files (skipped where `tarantoolctl` is missing).
    #[test]
    fn tarantoolctl_cat_reads_our_files() {
        let dir = tmpdir("xlog-cat");
        let path = file_name(&dir, 0, FileKind::Xlog);
        let mut w = XlogWriter::create(
            &path,
            &Meta::new(FileKind::Xlog, Uuid::new_v4(), Vclock::new(), None),
            false,
        )
        .unwrap();
        w.compress_blocks();
        for lsn in 1..=5 {
            let mut r = row(lsn);
            r.tsn = 1;
            r.is_commit = lsn == 5;
            w.add_row(&r.as_ref());
        }
        w.flush().unwrap();
        // A block past 2 KB: written compressed.
        for lsn in 6..=205 {
            w.add_row(&row(lsn).as_ref());
        }
        w.flush().unwrap();
        w.add_row(&row(206).as_ref());
        w.close().unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(
            raw.windows(4).any(|m| m == ZROW_MARKER),
            "a compressed block was written"
        );
        let (back, marker) = read_all(&path);
        assert!(marker);
        assert_eq!(
            back,
            (1..=206)
                .map(|l| {
                    let mut r = row(l);
                    if l <= 5 {
                        r.tsn = 1;
                        r.is_commit = l == 5;
                    }
                    r
                })
                .collect::<Vec<_>>()
        );
        let Ok(out) = std::process::Command::new("tarantoolctl")
            .arg("cat")
            .arg(&path)
            .current_dir(&dir)
            .output()
        else {
            eprintln!("tarantoolctl not found: skipped");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.matches("type: INSERT").count(), 206, "{text}");
        assert!(
            text.contains("lsn: 206") && text.contains("commit: true") && text.contains("tsn: 1"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_is_reported_with_offsets() {
        let dir = tmpdir("xlog-damage");
        let path = file_name(&dir, 0, FileKind::Xlog);
        let meta = Meta::new(FileKind::Xlog, Uuid::new_v4(), Vclock::new(), None);
        let mut w = XlogWriter::create(&path, &meta, false).unwrap();
        let mut ends = Vec::new();
        for i in 1..=3 {
            w.add_row(&row(i).as_ref());
            w.flush().unwrap();
            ends.push(w.offset());
        }
        w.close().unwrap();
        let good = std::fs::read(&path).unwrap();
        let start = meta.encode().len() as u64;
        // A flipped bit in the second block's data.
        let mut b = good.clone();
        b[ends[0] as usize + 25] ^= 4;
        std::fs::write(&path, &b).unwrap();
        let mut r = XlogReader::open(&path).unwrap();
        assert!(matches!(r.next_block().unwrap(), Next::Block(x) if x.offset == start));
        match r.next_block().unwrap() {
            Next::Damaged { offset, damage } => assert_eq!((offset, damage), (ends[0], Damage::Checksum)),
            _ => panic!("expected damage"),
        }
        assert_eq!(r.resync(ends[0]).unwrap(), Some(Resync::Block(ends[1])));
        // Data after the EOF marker.
        let mut b = good.clone();
        b.push(0);
        std::fs::write(&path, &b).unwrap();
        let mut r = XlogReader::open(&path).unwrap();
        for _ in 0..3 {
            assert!(matches!(r.next_block().unwrap(), Next::Block(_)));
        }
        assert!(matches!(
            r.next_block().unwrap(),
            Next::Damaged {
                damage: Damage::AfterEof,
                ..
            }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
