//! Output sets (`akvsync.outputs`, issue 14): the files applications read, written beside
//! the store as sets that switch to a new version atomically, the way Kubernetes' atomic
//! writer flips its `..data` link. For certificate `<vault>.<secret>` in a directory:
//!
//! ```text
//! .akvsync-data.<vault>.<secret>.<version>/   the files of one version (modes, owners)
//! .akvsync-current.<vault>.<secret>           → .akvsync-data.<vault>.<secret>.<version>
//! <file>                                      → .akvsync-current.<vault>.<secret>/<file>
//! ```
//!
//! A new version's directory is written completely and made durable, then the one
//! `current` link is renamed over the old one: every stable path is a complete file of one
//! version at every instant, and a crash leaves the old set or the new set. Stable links
//! never change once made; only names akvsync made are removed (old version directories
//! past the retention, links of files no longer configured). Every write goes through
//! [`crate::safefs`]. Linux only; Windows outputs are refused by validation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::decode::Bundle;
use crate::safefs::{self, Dir, Entry, FileSpec, test_delay};
#[cfg(unix)]
use crate::settings::AclEntry;
use crate::settings::outputs::{filter_name, render_template};
use crate::settings::{ObservedCertificate, OutputKind, OutputSet, PfxPassword, Settings, Target};
#[cfg(unix)]
use crate::store::linux::acl;

/// Where the ids of accounts that traverse an output directory are collected.
#[cfg(not(unix))]
mod acl {
    #[derive(Debug, Default)]
    pub struct Grants {
        pub users: Vec<u32>,
        pub groups: Vec<u32>,
    }
    impl Grants {
        pub fn is_empty(&self) -> bool {
            self.users.is_empty() && self.groups.is_empty()
        }
    }
}

const DATA_PREFIX: &str = ".akvsync-data.";
const CURRENT_PREFIX: &str = ".akvsync-current.";
/// A password file is read up to this many bytes; a password is one short line.
const MAX_PASSWORD_BYTES: u64 = 4096;
/// PKCS#12 KDF and MAC iterations of the PFX outputs (OpenSSL 3's default).
const PFX_ITERATIONS: u32 = 2048;

/// One file of a certificate's outputs in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub name: String,
    pub kind: OutputKind,
    /// Index of the output set it comes from (for messages and passwords).
    pub set: usize,
}

/// A certificate's outputs in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPlan {
    pub directory: PathBuf,
    pub files: Vec<PlannedFile>,
}

/// The certificate's name in output file names: `<vault>.<secret>`.
fn stem(certificate: &ObservedCertificate) -> String {
    format!(
        "{}.{}",
        certificate.secret.vault_name, certificate.secret.secret_name
    )
}

fn current_name(certificate: &ObservedCertificate) -> String {
    format!("{CURRENT_PREFIX}{}", stem(certificate))
}

fn data_name(certificate: &ObservedCertificate, version: &str) -> String {
    format!("{DATA_PREFIX}{}.{version}", stem(certificate))
}

/// The certificate's outputs, grouped by directory (settings order).
pub fn plan(settings: &Settings, certificate: &ObservedCertificate) -> Vec<DirPlan> {
    if settings.akvsync.outputs.is_empty() {
        return Vec::new();
    }
    let name = filter_name(certificate);
    let mut by_dir: BTreeMap<PathBuf, Vec<PlannedFile>> = BTreeMap::new();
    for (index, set) in settings.akvsync.outputs.iter().enumerate() {
        if !set.applies_to(&name) {
            continue;
        }
        let directory = match (&set.directory, &certificate.target) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Target::LinuxDirectory(t)) => PathBuf::from(&t.directory),
            (None, Target::WindowsStore(_)) => continue, // refused by validation
        };
        let files = by_dir.entry(directory).or_default();
        for (kind, template) in &set.files {
            files.push(PlannedFile {
                name: render_template(
                    template,
                    &certificate.secret.vault_name,
                    &certificate.secret.secret_name,
                ),
                kind: *kind,
                set: index,
            });
        }
    }
    by_dir
        .into_iter()
        .map(|(directory, files)| DirPlan { directory, files })
        .collect()
}

/// Where the stable paths of a plan are (for `status`).
pub fn paths(plans: &[DirPlan]) -> Vec<PathBuf> {
    plans
        .iter()
        .flat_map(|p| p.files.iter().map(|f| p.directory.join(&f.name)))
        .collect()
}

/// The version every output of the certificate shows, if they all show the same one:
/// each directory's `current` link names that version's data directory, and each stable
/// path is our link into it. `None` when anything is missing or differs (the next sync
/// then writes the outputs).
pub fn current_version(plans: &[DirPlan], certificate: &ObservedCertificate) -> Option<String> {
    let mut version: Option<String> = None;
    let current = current_name(certificate);
    let prefix = format!("{DATA_PREFIX}{}.", stem(certificate));
    for plan in plans {
        let target = std::fs::read_link(plan.directory.join(&current)).ok()?;
        let this = target.to_str()?.strip_prefix(&prefix)?.to_owned();
        if version.as_ref().is_some_and(|v| *v != this) {
            return None;
        }
        for file in &plan.files {
            let link = std::fs::read_link(plan.directory.join(&file.name)).ok()?;
            if link != Path::new(&current).join(&file.name) {
                return None;
            }
            // The file itself must exist in that version's directory.
            std::fs::symlink_metadata(plan.directory.join(&target).join(&file.name)).ok()?;
        }
        version = Some(this);
    }
    version
}

/// Removes the `.akvsync-tmp-*` entries an interrupted run left in an output directory
/// (links being switched) and in its data directories (files being written); none if the
/// directory does not exist. Returns how many.
pub fn remove_stale_temps(dir_path: &Path) -> std::io::Result<usize> {
    if std::fs::symlink_metadata(dir_path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        return Ok(0);
    }
    let dir = Dir::open(dir_path)?;
    let mut removed = dir.remove_stale_temps()?;
    for name in dir.list()? {
        if name.starts_with(DATA_PREFIX) && dir.entry(&name)? == Entry::Directory {
            removed += dir.subdir(&name, None)?.remove_stale_temps()?;
        }
    }
    Ok(removed)
}

/// Passwords of the PFX outputs by set index, fetched before writing; never logged.
pub type Passwords = BTreeMap<usize, Zeroizing<String>>;

/// Why a certificate's outputs were not written; what was there stays.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("outputs[{set}]: {message}")]
    Set { set: usize, message: String },
    #[error("{}: {message}", path.display())]
    Path { path: PathBuf, message: String },
}

fn set_error(set: usize, message: impl Into<String>) -> OutputError {
    OutputError::Set {
        set,
        message: message.into(),
    }
}

fn path_error(path: &Path, error: impl std::fmt::Display) -> OutputError {
    OutputError::Path {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

/// The password of a set whose PFX has one: from its file (first line; the file must be
/// owned by root or us and readable by no other account), or fetched beforehand.
pub fn read_password_file(path: &str) -> Result<Zeroizing<String>, String> {
    let file = safefs::open_read_nofollow(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().map_err(|e| format!("{path}: {e}"))?;
        let euid = nix::unistd::Uid::effective().as_raw();
        if !meta.is_file() {
            return Err(format!("{path} is not a regular file"));
        }
        if meta.uid() != 0 && meta.uid() != euid {
            return Err(format!(
                "{path} is owned by uid {}, not by root or the account akvsync runs as",
                meta.uid()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{path} has mode {:04o}: other accounts may read or change the PFX password \
                 (chmod 0600 it)",
                meta.mode() & 0o7777
            ));
        }
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PASSWORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() as u64 > MAX_PASSWORD_BYTES {
        return Err(format!("{path} is larger than {MAX_PASSWORD_BYTES} bytes"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("{path} is not UTF-8 text"))?;
    let line = text.split('\n').next().unwrap_or_default();
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(format!("{path}: the first line (the password) is empty"));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// Content of one output kind.
pub fn render(
    kind: OutputKind,
    bundle: &Bundle,
    password: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let intermediates: Vec<&[u8]> = bundle
        .chain
        .iter()
        .filter(|c| !c.is_self_signed())
        .map(|c| c.der.as_slice())
        .collect();
    let mut out = Zeroizing::new(Vec::new());
    let certs = |out: &mut Zeroizing<Vec<u8>>, leaf: bool, chain: bool| {
        if leaf {
            crate::decode::push_pem(out, "CERTIFICATE", &bundle.leaf.der);
        }
        if chain {
            for der in &intermediates {
                crate::decode::push_pem(out, "CERTIFICATE", der);
            }
        }
    };
    match kind {
        OutputKind::Cert => certs(&mut out, true, false),
        OutputKind::Chain => certs(&mut out, false, true),
        OutputKind::Fullchain => certs(&mut out, true, true),
        OutputKind::Key => crate::decode::push_pem(&mut out, "PRIVATE KEY", bundle.key.pkcs8_der()),
        OutputKind::Pem => {
            certs(&mut out, true, true);
            crate::decode::push_pem(&mut out, "PRIVATE KEY", bundle.key.pkcs8_der());
        }
        OutputKind::Pfx => {
            let chain: Vec<&[u8]> = std::iter::once(bundle.leaf.der.as_slice())
                .chain(intermediates.iter().copied())
                .collect();
            let options = match password {
                // OpenSSL 3's default form: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC),
                // HMAC-SHA256 MAC; OpenSSL 3, .NET and Windows 10+ open it.
                Some(password) => akvsync_pkcs12::EncodeOptions {
                    iterations: PFX_ITERATIONS,
                    ..akvsync_pkcs12::EncodeOptions::openssl_modern()
                }
                .with_password(password),
                // Empty password: 3DES and a SHA-1 MAC, with the password encoded as
                // OpenSSL does (00 00): what every reader opens, Java and older Windows
                // included.
                None => akvsync_pkcs12::EncodeOptions {
                    scheme: akvsync_pkcs12::Scheme::Legacy3Des,
                    iterations: PFX_ITERATIONS,
                    ..akvsync_pkcs12::EncodeOptions::openssl_modern()
                },
            };
            let der = akvsync_pkcs12::encode(&chain, bundle.key.pkcs8_der(), &options)
                .map_err(|e| format!("cannot encode the PFX: {e}"))?;
            out.extend_from_slice(&der);
        }
    }
    // A chain of a certificate without intermediates is an empty file, which every PEM
    // reader takes as "no certificates".
    Ok(out)
}

/// Resolved owner and group of a set (names or numeric ids, through NSS).
#[cfg(unix)]
fn file_spec(set_index: usize, set: &OutputSet) -> Result<FileSpec, OutputError> {
    let entry = AclEntry {
        user: set.owner.clone(),
        group: set.group.clone(),
    };
    let grants = acl::resolve(std::slice::from_ref(&entry))
        .map_err(|e| set_error(set_index, e.to_string()))?;
    Ok(FileSpec {
        mode: set.mode,
        owner: grants.users.first().copied(),
        group: grants.groups.first().copied(),
    })
}

/// A new version's output sets, written but not yet made durable nor current: the caller
/// may install the store in between, whose fsyncs then carry these files too (fewer journal
/// commits per certificate), before [`Prepared::finish`] fsyncs them (cheap by then) and
/// switches each set.
#[derive(Debug)]
pub struct Prepared<'a> {
    certificate: &'a ObservedCertificate,
    version: String,
    dirs: Vec<PreparedDir<'a>>,
}

#[derive(Debug)]
struct PreparedDir<'a> {
    plan: &'a DirPlan,
    dir: Dir,
    data: String,
    data_dir: Dir,
    traverse: acl::Grants,
    /// Files created in a fresh data directory, to fsync before the switch.
    written: Vec<(std::fs::File, PathBuf)>,
}

/// Writes the files of every set (refusing first everything that can be refused).
pub fn prepare<'a>(
    settings: &Settings,
    certificate: &'a ObservedCertificate,
    plans: &'a [DirPlan],
    version: &str,
    bundle: &Bundle,
    passwords: &Passwords,
) -> Result<Prepared<'a>, OutputError> {
    let sets = &settings.akvsync.outputs;
    // Everything that can be refused is refused before anything is written.
    let mut specs = BTreeMap::new();
    let mut all_passwords = BTreeMap::new();
    for plan in plans {
        for file in &plan.files {
            if let std::collections::btree_map::Entry::Vacant(slot) = specs.entry(file.set) {
                slot.insert(file_spec(file.set, &sets[file.set])?);
            }
            if file.kind == OutputKind::Pfx && !all_passwords.contains_key(&file.set) {
                let password = match &sets[file.set].pfx_password {
                    None => None,
                    Some(PfxPassword::File(path)) => Some(
                        read_password_file(path)
                            .map_err(|m| set_error(file.set, format!("pfxPassword: {m}")))?,
                    ),
                    Some(PfxPassword::Secret(_)) => {
                        Some(passwords.get(&file.set).cloned().ok_or_else(|| {
                            set_error(file.set, "pfxPassword: the secret was not fetched")
                        })?)
                    }
                };
                all_passwords.insert(file.set, password);
            }
        }
    }
    let mut dirs = Vec::with_capacity(plans.len());
    for plan in plans {
        dirs.push(prepare_dir(
            certificate,
            plan,
            version,
            bundle,
            &specs,
            &all_passwords,
        )?);
    }
    Ok(Prepared {
        certificate,
        version: version.to_owned(),
        dirs,
    })
}

fn prepare_dir<'a>(
    certificate: &ObservedCertificate,
    plan: &'a DirPlan,
    version: &str,
    bundle: &Bundle,
    specs: &BTreeMap<usize, FileSpec>,
    passwords: &BTreeMap<usize, Option<Zeroizing<String>>>,
) -> Result<PreparedDir<'a>, OutputError> {
    let dir_path = &plan.directory;
    let dir = Dir::create(dir_path, 0o755).map_err(|e| path_error(dir_path, e))?;
    let current = current_name(certificate);
    let data = data_name(certificate, version);
    // Stable names must be free or already our links.
    for file in &plan.files {
        match dir
            .entry(&file.name)
            .map_err(|e| path_error(&dir_path.join(&file.name), e))?
        {
            Entry::Nothing | Entry::Symlink(_) => {}
            _ => {
                return Err(path_error(
                    &dir_path.join(&file.name),
                    "exists and is not a link akvsync made; akvsync never replaces it (move it \
                     away to let akvsync manage this name)",
                ));
            }
        }
    }
    // Accounts that read the files need to traverse a private directory.
    let mut traverse = acl::Grants::default();
    for file in &plan.files {
        let spec = specs[&file.set];
        if let Some(uid) = spec.owner.filter(|u| *u != 0) {
            traverse.users.push(uid);
        }
        if let Some(gid) = spec.group.filter(|g| *g != 0) {
            traverse.groups.push(gid);
        }
    }
    traverse.users.sort_unstable();
    traverse.users.dedup();
    traverse.groups.sort_unstable();
    traverse.groups.dedup();

    // 1. The version's directory, from scratch (a crash may have left part of one). A
    //    fresh directory is invisible until the switch: its files are created at their
    //    names and fsynced together (one journal commit for the set). The current set's own
    //    directory (the same version, a file added to the settings) is live: each file is
    //    replaced through a temporary.
    let live = dir.read_link(&current).ok().as_deref() == Some(Path::new(&data));
    if !live {
        dir.remove_tree(&data)
            .map_err(|e| path_error(&dir_path.join(&data), e))?;
    }
    let data_dir = dir
        .subdir(&data, Some(0o755))
        .map_err(|e| path_error(&dir_path.join(&data), e))?;
    let mut written = Vec::with_capacity(plan.files.len());
    for file in &plan.files {
        let password = passwords
            .get(&file.set)
            .and_then(|p| p.as_ref().map(|p| p.as_str()));
        let content = render(file.kind, bundle, password).map_err(|m| set_error(file.set, m))?;
        let path = data_dir.path().join(&file.name);
        if live {
            let mut temp = data_dir
                .temp_file(specs[&file.set])
                .map_err(|e| path_error(&path, e))?;
            temp.file()
                .write_all(&content)
                .map_err(|e| path_error(&path, e))?;
            test_delay::pause();
            temp.commit(&file.name).map_err(|e| path_error(&path, e))?;
        } else {
            let mut created = data_dir
                .create_file(&file.name, specs[&file.set])
                .map_err(|e| path_error(&path, e))?;
            created
                .write_all(&content)
                .map_err(|e| path_error(&path, e))?;
            // Test builds only: a kill here leaves part of a set that is not current.
            test_delay::pause();
            written.push((created, path));
        }
    }
    // Known from now on, so that a set abandoned here (the store refused the version) is
    // pruned like any other.
    remember(&dir, &stem(certificate), &data, &[]).map_err(|e| path_error(dir_path, e))?;
    Ok(PreparedDir {
        plan,
        dir,
        data,
        data_dir,
        traverse,
        written,
    })
}

impl Prepared<'_> {
    /// Makes every prepared set durable and current, then prunes past `keep`.
    pub fn finish(self, keep: &[&str]) -> Result<(), OutputError> {
        for prepared in self.dirs {
            prepared.finish(self.certificate, &self.version, keep)?;
        }
        Ok(())
    }
}

impl PreparedDir<'_> {
    fn finish(
        self,
        certificate: &ObservedCertificate,
        version: &str,
        keep: &[&str],
    ) -> Result<(), OutputError> {
        let PreparedDir {
            plan,
            dir,
            data,
            data_dir,
            traverse,
            written,
        } = self;
        let dir_path = &plan.directory;
        let current = current_name(certificate);
        let link_target = |name: &str| Path::new(&current).join(name);
        for (file, path) in &written {
            file.sync_all().map_err(|e| path_error(path, e))?;
        }
        drop(written);
        data_dir
            .sync()
            .map_err(|e| path_error(data_dir.path(), e))?;
        if !traverse.is_empty() {
            grant_traverse(dir_path, &traverse)?;
        }
        // Test builds only: a kill here leaves a complete set that is not current yet.
        test_delay::pause();
        // 2. One rename switches the whole set.
        dir.replace_symlink(&current, Path::new(&data))
            .map_err(|e| path_error(&dir_path.join(&current), e))?;
        // 3. Stable links (made once; they point through `current`).
        for file in &plan.files {
            let target = link_target(&file.name);
            if dir.read_link(&file.name).ok().as_deref() != Some(target.as_path()) {
                dir.replace_symlink(&file.name, &target)
                    .map_err(|e| path_error(&dir_path.join(&file.name), e))?;
            }
        }
        dir.sync().map_err(|e| path_error(dir_path, e))?;
        let links: Vec<&str> = plan.files.iter().map(|f| f.name.as_str()).collect();
        remember(&dir, &stem(certificate), &data, &links).map_err(|e| path_error(dir_path, e))?;
        // 4. Old versions and links of files no longer configured.
        prune_dir(&dir, certificate, plan, version, keep)
    }
}

#[cfg(not(unix))]
fn file_spec(_set_index: usize, set: &OutputSet) -> Result<FileSpec, OutputError> {
    Ok(FileSpec {
        mode: set.mode,
        owner: None,
        group: None,
    })
}

#[cfg(unix)]
fn grant_traverse(dir: &Path, grants: &acl::Grants) -> Result<(), OutputError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir).map_err(|e| path_error(dir, e))?;
    if meta.permissions().mode() & 0o001 != 0 {
        return Ok(()); // everyone may traverse already
    }
    let handle = std::fs::File::open(dir).map_err(|e| path_error(dir, e))?;
    acl::add_to(&handle, grants, acl::EXECUTE).map_err(|e| path_error(dir, e))
}

#[cfg(not(unix))]
fn grant_traverse(_dir: &Path, _grants: &acl::Grants) -> Result<(), OutputError> {
    Ok(())
}

/// Prunes outputs that are already current for `version` (nothing is written): what a
/// crash between a set's switch and its pruning left stays otherwise until the next version.
pub fn prune(
    certificate: &ObservedCertificate,
    plans: &[DirPlan],
    version: &str,
    keep: &[&str],
) -> Result<(), OutputError> {
    for plan in plans {
        let dir = Dir::open(&plan.directory).map_err(|e| path_error(&plan.directory, e))?;
        prune_dir(&dir, certificate, plan, version, keep)?;
    }
    Ok(())
}

fn prune_dir(
    dir: &Dir,
    certificate: &ObservedCertificate,
    plan: &DirPlan,
    version: &str,
    keep: &[&str],
) -> Result<(), OutputError> {
    let stem = stem(certificate);
    let current = current_name(certificate);
    let configured: HashSet<&str> = plan.files.iter().map(|f| f.name.as_str()).collect();
    let mut removed = false;
    let mut failure = None;
    with_known(dir, &stem, |known| {
        known.data.retain(|name| {
            let old = name.rsplit_once('.').map_or("", |(_, v)| v);
            if failure.is_some() || old == version || keep.contains(&old) {
                return true;
            }
            match dir.remove_tree(name) {
                Ok(()) => {
                    removed = true;
                    false
                }
                Err(e) => {
                    failure = Some(path_error(&dir.path().join(name), e));
                    true
                }
            }
        });
        known.links.retain(|name| {
            if failure.is_some() || configured.contains(name.as_str()) {
                return true;
            }
            // A stable link of a file no longer configured: ours (still pointing through
            // `current`), now pointless.
            let ours = matches!(dir.entry(name), Ok(Entry::Symlink(target))
                if target.starts_with(&current) && target.components().count() == 2);
            if !ours {
                return false;
            }
            match dir.remove_file(name) {
                Ok(_) => {
                    removed = true;
                    false
                }
                Err(e) => {
                    failure = Some(path_error(&dir.path().join(name), e));
                    true
                }
            }
        });
    })
    .map_err(|e| path_error(dir.path(), e))?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    if removed {
        dir.sync().map_err(|e| path_error(dir.path(), e))?;
    }
    Ok(())
}

/// What one certificate has in an output directory: its data directories and its stable
/// links (names).
#[derive(Debug, Default)]
struct Known {
    data: Vec<String>,
    links: Vec<String>,
}

/// Each output directory's entries, by certificate stem, as this process knows them: listed
/// once when the process first prunes there, then kept up to date by every write and prune.
/// Listing per certificate made a cold sync quadratic (1,000 certificates with 3 outputs:
/// 18 s of CPU instead of under 1 s, docs/benchmarks.md).
static KNOWN: Mutex<BTreeMap<PathBuf, HashMap<String, Known>>> = Mutex::new(BTreeMap::new());

fn with_known(dir: &Dir, stem: &str, f: impl FnOnce(&mut Known)) -> std::io::Result<()> {
    let mut all = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if !all.contains_key(dir.path()) {
        all.insert(dir.path().to_owned(), list_by_stem(dir)?);
    }
    let by_stem = all.get_mut(dir.path()).expect("inserted above");
    f(by_stem.entry(stem.to_owned()).or_default());
    Ok(())
}

/// One listing of an output directory, grouped by certificate stem.
fn list_by_stem(dir: &Dir) -> std::io::Result<HashMap<String, Known>> {
    let mut by_stem: HashMap<String, Known> = HashMap::new();
    for name in dir.list()? {
        if let Some(rest) = name.strip_prefix(DATA_PREFIX) {
            if let Some((stem, _)) = rest.rsplit_once('.') {
                by_stem.entry(stem.to_owned()).or_default().data.push(name);
            }
        } else if !name.starts_with('.')
            && let Ok(Entry::Symlink(target)) = dir.entry(&name)
            && let Some(stem) = target
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .and_then(|c| c.strip_prefix(CURRENT_PREFIX))
        {
            by_stem.entry(stem.to_owned()).or_default().links.push(name);
        }
    }
    Ok(by_stem)
}

/// Records what a write made.
fn remember(dir: &Dir, stem: &str, data: &str, links: &[&str]) -> std::io::Result<()> {
    with_known(dir, stem, |known| {
        if !known.data.iter().any(|d| d == data) {
            known.data.push(data.to_owned());
        }
        for link in links {
            if !known.links.iter().any(|l| l == link) {
                known.links.push((*link).to_owned());
            }
        }
    })
}
