//! Capture files in memory: mapped when the file allows it, read otherwise.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A capture file's bytes, mapped read-only (or read, for pipes and other files
/// that cannot be mapped).
#[derive(Debug)]
pub struct MappedCapture {
    pub path: PathBuf,
    data: Data,
}

#[derive(Debug)]
enum Data {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl MappedCapture {
    pub fn open(path: &Path) -> Result<MappedCapture> {
        let file =
            File::open(path).with_context(|| format!("cannot open capture {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if meta.is_dir() {
            anyhow::bail!("{} is a directory, not a capture file", path.display());
        }
        let data = if meta.is_file() && meta.len() > 0 {
            // SAFETY: the mapping is read-only and private to this process. Its
            // contents change only if another process truncates or rewrites the file
            // while we read it; tapwatch never writes capture files it reads. As for
            // any mmap-based reader (tcpdump -r with libpcap's mmap, Wireshark's
            // file_seek), replaying a capture that is being rewritten is undefined;
            // the documentation says to copy a live capture before replaying it.
            match unsafe { memmap2::Mmap::map(&file) } {
                Ok(m) => {
                    // Sequential reads: let the kernel read ahead aggressively.
                    let _ = m.advise(memmap2::Advice::Sequential);
                    Data::Mapped(m)
                }
                Err(_) => Data::Read(
                    std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
            }
        } else {
            Data::Read(
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
        };
        Ok(MappedCapture {
            path: path.to_path_buf(),
            data,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Mapped(m) => m,
            Data::Read(v) => v,
        }
    }
}
