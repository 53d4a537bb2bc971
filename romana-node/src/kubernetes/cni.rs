//! The CNI side of the Kubernetes install.
//!
//! - [`install_cni`]: what the DaemonSet's init container runs
//!   (`romana-node install-cni --from /opt/romana/cni --to /host/opt/cni/bin`):
//!   every plugin binary is copied next to its destination and renamed over
//!   it, so a runtime never executes a half-written plugin. A plugin the
//!   host already has (its own portmap or loopback) is left alone; `romana`
//!   is always replaced. The files it created are listed in
//!   `.romana-installed`, so `romana-node cleanup --uninstall` removes
//!   exactly those and the host is as it was.
//! - [`write_conflist`]: the node writes `10-romana.conflist` (romana, then
//!   portmap) only once it serves ADDs; it stays in place across restarts
//!   (an ADD while the node restarts fails and is retried by the kubelet).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Context as _, Error};

/// The conflist's file name: sorts before most others, so the runtime
/// picks it.
pub const CONFLIST_NAME: &str = "10-romana.conflist";
/// The CNI network's name.
pub const NETWORK_NAME: &str = "romana";
/// Where the plugin logs each ADD/DEL (the seed's path).
pub const CNI_LOG_FILE: &str = "/tmp/romana-cni.log";
/// Where runtimes look for CNI plugins.
pub const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";
/// The plugin this project ships (always installed, replacing an older one).
pub const ROMANA_PLUGIN: &str = "romana";
/// The record of the files `install-cni` created.
pub const INSTALLED_LIST: &str = ".romana-installed";

/// What `install-cni` did.
#[derive(Debug, Default)]
pub struct Installed {
    pub installed: Vec<PathBuf>,
    /// The host's own plugins, left as they were.
    pub kept: Vec<PathBuf>,
}

/// Copies every regular file of `from` into `to`, atomically each.
pub fn install_cni(from: &Path, to: &Path) -> Result<Installed, Error> {
    std::fs::create_dir_all(to).context(format!("cannot create {}", to.display()))?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
        .context(format!("cannot read {}", from.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    entries.sort();
    if entries.is_empty() {
        return Err(Error::Config(format!(
            "{} holds no plugin to install",
            from.display()
        )));
    }
    let list_path = to.join(INSTALLED_LIST);
    let mut created: BTreeSet<String> = std::fs::read_to_string(&list_path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let mut installed = Installed::default();
    for source in entries {
        let Some(file_name) = source.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let target = to.join(file_name);
        if target.exists() && !created.contains(file_name) && file_name != ROMANA_PLUGIN {
            // The host's own plugin (its portmap, say): left as it is.
            installed.kept.push(target);
            continue;
        }
        if !target.exists() {
            created.insert(file_name.to_string());
        }
        let temporary = to.join(format!(".{file_name}.romana-tmp"));
        std::fs::copy(&source, &temporary).context(format!(
            "cannot copy {} to {}",
            source.display(),
            temporary.display()
        ))?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755))
            .context(format!("cannot set mode of {}", temporary.display()))?;
        sync_file(&temporary)?;
        std::fs::rename(&temporary, &target)
            .context(format!("cannot install {}", target.display()))?;
        installed.installed.push(target);
    }
    let list: Vec<&str> = created.iter().map(String::as_str).collect();
    write_atomically(
        &list_path,
        format!("{}\n", list.join("\n")).as_bytes(),
        0o644,
    )?;
    Ok(installed)
}

/// The conflist the node writes.
pub fn conflist(socket: &Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "romana",
                "kubernetes": true,
                "node_socket": socket.display().to_string(),
                "log_file": CNI_LOG_FILE,
            },
            {
                "type": "portmap",
                "capabilities": {"portMappings": true},
            }
        ]
    })
}

/// Writes the conflist into `dir` (atomically; unchanged if identical).
pub fn write_conflist(dir: &Path, socket: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
    let path = dir.join(CONFLIST_NAME);
    let text = serde_json::to_string_pretty(&conflist(socket))
        .map_err(|e| Error::Config(format!("conflist: {e}")))?
        + "\n";
    if std::fs::read_to_string(&path).is_ok_and(|existing| existing == text) {
        return Ok(path);
    }
    write_atomically(&path, text.as_bytes(), 0o644)?;
    Ok(path)
}

/// `romana-node cleanup --uninstall`: the conflist, the plugins
/// `install-cni` created, and the record of them.
pub fn uninstall(conf_dir: &Path, bin_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut removed = Vec::new();
    let conflist = conf_dir.join(CONFLIST_NAME);
    if conflist.exists() {
        std::fs::remove_file(&conflist).context(format!("cannot remove {}", conflist.display()))?;
        removed.push(conflist);
    }
    let list_path = bin_dir.join(INSTALLED_LIST);
    if let Ok(text) = std::fs::read_to_string(&list_path) {
        for name in text.lines().filter(|l| !l.is_empty() && !l.contains('/')) {
            let path = bin_dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path).context(format!("cannot remove {}", path.display()))?;
                removed.push(path);
            }
        }
        std::fs::remove_file(&list_path)
            .context(format!("cannot remove {}", list_path.display()))?;
        removed.push(list_path);
    }
    Ok(removed)
}

fn sync_file(path: &Path) -> Result<(), Error> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .context(format!("cannot sync {}", path.display()))
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file")
        .to_string();
    let temporary = path.with_file_name(format!(".{file_name}.romana-tmp"));
    {
        let mut file = std::fs::File::create(&temporary)
            .context(format!("cannot write {}", temporary.display()))?;
        file.write_all(bytes)
            .and_then(|_| file.sync_all())
            .context(format!("cannot write {}", temporary.display()))?;
    }
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
        .context(format!("cannot set mode of {}", temporary.display()))?;
    std::fs::rename(&temporary, path).context(format!("cannot write {}", path.display()))
}

/// Writes the conflist once this node serves ADDs: it is a member and its
/// isolation rules are in place (until then an ADD would be refused).
pub async fn write_when_ready(
    node: crate::node::Node,
    dir: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut applied = node.shared.subscribe();
    loop {
        let ready = node
            .firewall_ready
            .load(std::sync::atomic::Ordering::SeqCst)
            && node
                .shared
                .read()
                .state
                .nodes
                .contains_key(&node.config.name);
        if ready {
            match write_conflist(&dir, &node.config.api_socket) {
                Ok(path) => {
                    tracing::info!(path = %path.display(), "serving ADDs: wrote the CNI conflist")
                }
                Err(e) => tracing::error!(error = %e, "cannot write the CNI conflist"),
            }
            return;
        }
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            _ = applied.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_replaces_atomically_and_uninstall_removes_only_what_it_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("from");
        let to = dir.path().join("bin");
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&from).expect("mkdir");
        std::fs::create_dir_all(&to).expect("mkdir");
        std::fs::write(from.join("romana"), b"new romana").expect("write");
        std::fs::write(from.join("portmap"), b"our portmap").expect("write");
        // portmap was there before the install: the host's stays.
        std::fs::write(to.join("portmap"), b"their portmap").expect("write");
        let done = install_cni(&from, &to).expect("install");
        assert_eq!(done.kept, vec![to.join("portmap")]);
        assert_eq!(
            std::fs::read(to.join("romana")).expect("read"),
            b"new romana"
        );
        assert_eq!(
            std::fs::read(to.join("portmap")).expect("read"),
            b"their portmap"
        );
        // A second install (a restart, with a newer romana) replaces romana
        // and keeps the record of what it created.
        std::fs::write(from.join("romana"), b"newer romana").expect("write");
        install_cni(&from, &to).expect("install again");
        assert_eq!(
            std::fs::read(to.join("romana")).expect("read"),
            b"newer romana"
        );
        write_conflist(&conf, Path::new("/run/romana/romana.sock")).expect("conflist");
        let text = std::fs::read_to_string(conf.join(CONFLIST_NAME)).expect("read");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["plugins"][0]["type"], "romana");
        assert_eq!(value["plugins"][1]["type"], "portmap");
        let leftovers: Vec<_> = std::fs::read_dir(&to)
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".romana-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        uninstall(&conf, &to).expect("uninstall");
        assert!(!to.join("romana").exists());
        assert!(
            to.join("portmap").exists(),
            "a plugin that was there before stays"
        );
        assert!(!conf.join(CONFLIST_NAME).exists());
        assert!(!to.join(INSTALLED_LIST).exists());
    }
}
