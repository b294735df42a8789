//! The master key: a set of versioned 256-bit keys (SPEC §2.9). The highest
//! version wraps (seals) new items; every listed version unwraps the items it
//! wrapped, which record that version next to the sealed bytes.
//!
//! **File format.** One key per line, `vN:<base64 of 32 bytes>`, versions
//! N >= 1 in any order; lines starting with `#` are comments (the
//! development marker is one). A file holding a single base64 key without a
//! `vN:` prefix (the format before master-key rotation) is version 1.
//!
//! **Reloading.** A key that came from a file re-reads that file when it
//! changed — checked by its metadata (inode, size, modification time) before
//! every seal, and whenever an item names a version this process does not
//! hold. So a server started before `stockade keys rotate` wraps new items
//! under the new version and reads items the rotation re-wrapped, without a
//! signal or a restart. A file that cannot be read or parsed on reload is
//! ignored (logged) and the keys in memory stay in force.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::crypto::seal::{self, SealError};

type Key = Zeroizing<[u8; 32]>;

/// The versioned master keys; wiped on drop, never printed.
pub struct MasterKey {
    keys: RwLock<Arc<BTreeMap<u32, Key>>>,
    file: Option<PathBuf>,
    /// The metadata of the file when it was last read.
    stamp: Mutex<Option<Stamp>>,
}

/// What tells that a key file changed: a rename gives a new inode; an edit
/// in place a new size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(versions={:?}, ***)", self.versions())
    }
}

impl MasterKey {
    /// Parses the text of a master key (see the module documentation);
    /// `file` is where it was read from, so it can be re-read. `None` when
    /// the text is not a master key.
    pub fn parse(text: &str, file: Option<PathBuf>) -> Option<Self> {
        let keys = parse_keys(text)?;
        let stamp = file.as_deref().and_then(stamp);
        Some(Self {
            keys: RwLock::new(Arc::new(keys)),
            file,
            stamp: Mutex::new(stamp),
        })
    }

    /// A master key of one version, held in memory only (tests, benches).
    pub fn single(version: u32, key: [u8; 32]) -> Self {
        Self {
            keys: RwLock::new(Arc::new(BTreeMap::from([(version, Zeroizing::new(key))]))),
            file: None,
            stamp: Mutex::new(None),
        }
    }

    /// The file the keys come from, if any (rotation needs one).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn snapshot(&self) -> Arc<BTreeMap<u32, Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The versions held, ascending.
    pub fn versions(&self) -> Vec<u32> {
        self.snapshot().keys().copied().collect()
    }

    /// The version that wraps new items (the highest), after re-reading the
    /// file if it changed.
    pub fn current_version(&self) -> u32 {
        self.refresh_if_changed();
        self.snapshot().keys().next_back().copied().unwrap_or(0)
    }

    /// Seals `plaintext` under the current version; returns the sealed bytes
    /// and that version (to store next to them).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, u32), SealError> {
        self.refresh_if_changed();
        let keys = self.snapshot();
        let (version, key) = keys.iter().next_back().ok_or(SealError::Encrypt)?;
        Ok((seal::seal(key, aad, plaintext)?, *version))
    }

    /// Opens an item sealed under master `version`. A version this process
    /// does not hold makes it re-read the file once; still unknown (say,
    /// retired): [`SealError::Unauthentic`].
    pub fn open(
        &self,
        version: u32,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut keys = self.snapshot();
        if !keys.contains_key(&version) {
            self.refresh_if_changed();
            keys = self.snapshot();
        }
        let key = keys.get(&version).ok_or(SealError::Unauthentic)?;
        seal::open(key, aad, sealed)
    }

    /// The raw key of `version`, for tests that check what is stored.
    pub fn key_bytes(&self, version: u32) -> Option<Key> {
        self.snapshot().get(&version).cloned()
    }

    /// Re-reads the file now if its metadata changed since the last read.
    pub fn refresh_if_changed(&self) {
        let Some(path) = &self.file else { return };
        let now = stamp(path);
        let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_none() || now == *last {
            return;
        }
        match std::fs::read_to_string(path).map(Zeroizing::new) {
            Ok(text) => match parse_keys(&text) {
                Some(keys) => {
                    *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                    *last = now;
                }
                None => tracing::warn!(
                    file = %path.display(),
                    "the master key file changed but does not parse; keeping the keys in memory"
                ),
            },
            Err(e) => tracing::warn!(
                file = %path.display(),
                error = %e,
                "the master key file changed but cannot be read; keeping the keys in memory"
            ),
        }
    }
}

/// Parses keys: comment lines (`#`) and blank lines are skipped; lines with
/// a `:` are `vN:<base64>` (base64 has no `:`), otherwise the whole body is
/// one base64 key, version 1.
pub(crate) fn parse_keys(text: &str) -> Option<BTreeMap<u32, Key>> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut keys = BTreeMap::new();
    if lines.iter().any(|l| l.contains(':')) {
        for line in lines {
            let (version, body) = line.split_once(':')?;
            let version: u32 = version.strip_prefix('v')?.parse().ok()?;
            if version == 0 || keys.insert(version, decode_key(body)?).is_some() {
                return None;
            }
        }
    } else {
        keys.insert(1, decode_key(&lines.concat())?);
    }
    (!keys.is_empty()).then_some(keys)
}

fn decode_key(body: &str) -> Option<Key> {
    let bytes = Zeroizing::new(B64.decode(body.trim()).ok()?);
    let array: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(Zeroizing::new(array))
}

/// The text of a key file holding `keys`, keeping the comment lines of
/// `previous` (the development marker among them) at the top.
pub(crate) fn render(previous: &str, keys: &BTreeMap<u32, Key>) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for line in previous.lines().filter(|l| l.trim_start().starts_with('#')) {
        out.push_str(line);
        out.push('\n');
    }
    for (version, key) in keys {
        out.push_str(&format!("v{version}:{}\n", B64.encode(key.as_slice())));
    }
    out
}

/// Appends a fresh random key to the key file at `path` as version
/// (highest + 1), atomically; returns the new version.
pub fn append_version(path: &Path) -> anyhow::Result<u32> {
    edit_file(path, |keys| {
        let next = keys
            .keys()
            .next_back()
            .and_then(|v| v.checked_add(1))
            .ok_or_else(|| anyhow::anyhow!("no master-key version can follow the highest one"))?;
        let key = crate::crypto::random::secret_bytes::<32>()?;
        keys.insert(next, key);
        Ok(next)
    })
}

/// Removes `version` from the key file at `path`, atomically. Refuses the
/// highest version (it wraps new items) and a version the file lacks.
pub fn remove_version(path: &Path, version: u32) -> anyhow::Result<()> {
    edit_file(path, |keys| {
        if !keys.contains_key(&version) {
            anyhow::bail!("the master key file has no version v{version}");
        }
        if keys.keys().next_back() == Some(&version) {
            anyhow::bail!(
                "master v{version} is the current version (it wraps new items): \
                 run `stockade keys rotate` first"
            );
        }
        keys.remove(&version);
        Ok(())
    })
}

/// Reads, changes and rewrites the key file: under a lock file (so two
/// rotations cannot both add "the next" version), through a temporary file
/// of mode 0600 that is written, synced and renamed over the old one, then
/// the directory synced: a crash leaves the old file or the new one.
fn edit_file<T>(
    path: &Path,
    change: impl FnOnce(&mut BTreeMap<u32, Key>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} is not a file", path.display()))?
        .to_string_lossy()
        .into_owned();
    let lock_path = dir.join(format!(".{name}.lock"));
    let _lock = LockFile::acquire(&lock_path)?;

    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
    );
    let mut keys = parse_keys(&text)
        .ok_or_else(|| anyhow::anyhow!("{} is not a valid master key file", path.display()))?;
    let result = change(&mut keys)?;
    let body = render(&text, &keys);

    let suffix = hex::encode(crate::crypto::random::secret_bytes::<8>()?.as_slice());
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let written = (|| -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
        file.write_all(body.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
            .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", path.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    Ok(result)
}

/// An advisory lock (`flock`) on a lock file beside the key file, held
/// while the value lives. The kernel releases it when the process ends, so
/// a crashed rotation never leaves a stale lock behind; the (empty) lock
/// file itself stays and is harmless.
struct LockFile(#[allow(dead_code)] std::fs::File); // reason: held only for its lock

impl LockFile {
    fn acquire(path: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open the lock {} ({e})", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(anyhow::anyhow!(
                "another key change is running (it holds {})",
                path.display()
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!(
                "cannot take the lock {} ({e})",
                path.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_single_key_format_is_version_1() {
        let text = format!("# comment\n{}\n", B64.encode([3u8; 32]));
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(*keys[&1], [3u8; 32]);
    }

    #[test]
    fn versioned_lines_parse_and_render_back() {
        let text = format!(
            "# marker\nv2:{}\nv1:{}\n",
            B64.encode([2u8; 32]),
            B64.encode([1u8; 32])
        );
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.keys().copied().collect::<Vec<_>>(), [1, 2]);
        let rendered = render(&text, &keys);
        assert!(rendered.starts_with("# marker\nv1:"));
        assert_eq!(parse_keys(&rendered).unwrap().len(), 2);
    }

    #[test]
    fn malformed_files_are_refused() {
        let k = B64.encode([1u8; 32]);
        for bad in [
            String::new(),
            "# only a comment".to_owned(),
            format!("v0:{k}"),
            format!("v1:{k}\nv1:{k}"),
            format!("v1:{k}\n{k}"),
            format!("x1:{k}"),
            format!("v1:{}", B64.encode([1u8; 31])),
        ] {
            assert!(parse_keys(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn seal_uses_the_highest_version_and_open_needs_the_right_one() {
        let text = format!(
            "v1:{}\nv2:{}\n",
            B64.encode([1u8; 32]),
            B64.encode([2u8; 32])
        );
        let m = MasterKey::parse(&text, None).unwrap();
        let (sealed, v) = m.seal(b"aad", b"secret").unwrap();
        assert_eq!(v, 2);
        assert_eq!(m.open(2, b"aad", &sealed).unwrap().as_slice(), b"secret");
        assert!(m.open(1, b"aad", &sealed).is_err());
        assert!(m.open(3, b"aad", &sealed).is_err());
        assert!(!format!("{m:?}").contains(&B64.encode([2u8; 32])));
    }

    #[test]
    fn the_file_is_edited_atomically_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, format!("# dev\n{}\n", B64.encode([1u8; 32]))).unwrap();
        let m =
            MasterKey::parse(&std::fs::read_to_string(&path).unwrap(), Some(path.clone())).unwrap();
        let (old, v1) = m.seal(b"a", b"x").unwrap();
        assert_eq!(v1, 1);
        assert_eq!(append_version(&path).unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# dev\nv1:"), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The same process picks the new version up at its next seal.
        assert_eq!(m.seal(b"a", b"x").unwrap().1, 2);
        assert!(m.open(1, b"a", &old).is_ok());
        assert!(remove_version(&path, 2).is_err(), "the current version");
        assert!(remove_version(&path, 9).is_err());
        remove_version(&path, 1).unwrap();
        assert_eq!(m.current_version(), 2);
        assert!(m.open(1, b"a", &old).is_err(), "retired: gone");
        // No temporary file is left behind: the key file and its lock file.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".master.key.lock", "master.key"]);
    }

    #[test]
    fn a_held_lock_refuses_a_second_change_and_a_released_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, format!("{}\n", B64.encode([1u8; 32]))).unwrap();
        let held = LockFile::acquire(&dir.path().join(".master.key.lock")).unwrap();
        let err = append_version(&path).unwrap_err().to_string();
        assert!(err.contains("another key change is running"), "{err}");
        drop(held); // as when a crashed process's descriptors close
        assert_eq!(append_version(&path).unwrap(), 2);
    }
}
