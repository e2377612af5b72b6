//! Live reload: the policy directory is watched (inotify through `notify`,
//! with a slow poll as a safety net, and SIGHUP), changes are debounced, and
//! the whole set is loaded, validated and compiled off the request path, then
//! swapped in atomically. An invalid set is rejected: the last good set keeps
//! serving, every diagnostic is logged, and the failure is counted and shown
//! (the `stepup.policy` health service turns NOT_SERVING until a reload
//! succeeds).
//!
//! The directories of list files named in the config (`[lists]`) are watched
//! as well; a reload re-reads every list.
//!
//! Kubernetes mounts a ConfigMap as symlinks into a `..data` directory that
//! is swapped atomically on update; watching the directory itself and
//! reloading the whole set handles that, and a half-written file or a
//! deleted directory only ever produces a failed reload.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::Watcher as _;
use tokio::sync::{mpsc, watch};

use super::Service;
use crate::lists::ListsConfig;
use crate::policy::{PolicySet, Report};

/// Counters and the last error of reloads, shared with health and (later)
/// metrics.
#[derive(Debug)]
pub struct ReloadStatus {
    /// Reloads that swapped in a new revision.
    pub ok: AtomicU64,
    /// Reloads rejected because the new set was invalid or unreadable.
    pub failed: AtomicU64,
    last_error: Mutex<Option<(SystemTime, String)>>,
    healthy: watch::Sender<bool>,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        Self {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            healthy: watch::channel(true).0,
        }
    }
}

impl ReloadStatus {
    /// The last failed reload's time and diagnostics, until one succeeds.
    pub fn last_error(&self) -> Option<(SystemTime, String)> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Follows whether the last reload succeeded.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }

    fn succeeded(&self, swapped: bool) {
        if swapped {
            self.ok.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
        self.healthy.send_replace(true);
    }

    fn failed(&self, report: &Report) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((SystemTime::now(), report.to_string()));
        }
        self.healthy.send_replace(false);
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// The files are unchanged (same revision): nothing to do.
    Unchanged,
    /// A new revision is serving.
    Swapped {
        /// The new revision.
        revision: Arc<str>,
    },
    /// The new set was rejected; the old one keeps serving.
    Rejected(Report),
}

/// Reloads one engine's policy set from a directory (and the IP lists and
/// GeoIP database loaded with it).
pub struct Reloader {
    engine: Arc<Service>,
    dir: PathBuf,
    lists: ListsConfig,
}

impl Reloader {
    /// Reloads `engine` from `dir`.
    pub fn new(engine: Arc<Service>, dir: PathBuf) -> Self {
        Self {
            engine,
            dir,
            lists: ListsConfig::default(),
        }
    }

    /// Also (re)loads the lists of `lists` (`[lists]` in the config file)
    /// with every set.
    pub fn with_lists(mut self, lists: ListsConfig) -> Self {
        self.lists = lists;
        self
    }

    /// The directories of the configured list files that the policy
    /// directory's recursive watch does not cover.
    fn list_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .lists
            .ip
            .values()
            .chain(self.lists.geoip_city.iter())
            .filter_map(|p| p.parent())
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_path_buf()
                }
            })
            .filter(|d| !d.starts_with(&self.dir))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Loads the directory and swaps the set in if it is valid and new.
    /// Blocking (file I/O and compilation): call it off the request path.
    pub fn reload(&self) -> Reload {
        let status = self.engine.reload_status();
        let current = self.engine.policy();
        match PolicySet::load_with(&self.dir, &self.lists, Some(&current)) {
            Ok((set, warnings)) => {
                for w in &warnings.diagnostics {
                    tracing::warn!("{w}");
                }
                if set.revision == current.revision {
                    status.succeeded(false);
                    return Reload::Unchanged;
                }
                let revision = Arc::clone(&set.revision);
                tracing::info!(
                    %revision,
                    previous = %current.revision,
                    signals = set.signals.len(),
                    rules = set.rules.len(),
                    "policy set reloaded"
                );
                self.engine.replace_policy(set);
                status.succeeded(true);
                Reload::Swapped { revision }
            }
            Err(report) => {
                tracing::error!(
                    dir = %self.dir.display(),
                    errors = report.error_count(),
                    serving = %self.engine.policy().revision,
                    "policy reload rejected; the last good set keeps serving:\n{report}"
                );
                status.failed(&report);
                Reload::Rejected(report)
            }
        }
    }
}

/// How the policy directory is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// Use filesystem notifications (inotify).
    pub notify: bool,
    /// Poll for changes this often anyway (a safety net for lost
    /// notifications, e.g. a directory deleted and re-created); `None`: no
    /// polling.
    pub poll: Option<Duration>,
    /// Wait this long after the last change before reloading, so that a set
    /// being written file by file is read once, whole.
    pub debounce: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            notify: true,
            poll: Some(Duration::from_secs(10)),
            debounce: Duration::from_millis(250),
        }
    }
}

/// Why something asked for a reload.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Change,
    Signal,
}

/// Runs the reload loop until `shutdown` resolves: file changes (debounced),
/// SIGHUP and the poll timer each trigger a reload.
pub async fn run(
    reloader: Arc<Reloader>,
    options: WatchOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (tx, mut rx) = mpsc::channel::<Trigger>(64);

    // Keep the watcher alive for the loop's lifetime.
    let _watcher = if options.notify {
        let events = tx.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reads (our own, when reloading) are not changes: reacting to
            // them would reload forever.
            if let Ok(event) = event
                && !matches!(event.kind, notify::EventKind::Access(_))
            {
                let _ = events.try_send(Trigger::Change);
            }
        })
        .and_then(|mut w| {
            w.watch(&reloader.dir, notify::RecursiveMode::Recursive)?;
            // Lists named in the config live outside the policy directory:
            // watch their directories too (directories, not files, so that
            // files replaced by rename are still followed).
            for dir in reloader.list_dirs() {
                if let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                    tracing::warn!(
                        dir = %dir.display(),
                        "cannot watch a list directory ({e}); relying on polling ({:?}) and SIGHUP",
                        options.poll
                    );
                }
            }
            Ok(w)
        });
        match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    dir = %reloader.dir.display(),
                    "cannot watch the policy directory ({e}); relying on polling ({:?}) and SIGHUP",
                    options.poll
                );
                None
            }
        }
    } else {
        None
    };

    #[cfg(unix)]
    {
        let hup = tx.clone();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        if hup.send(Trigger::Signal).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => tracing::warn!("cannot listen for SIGHUP: {e}"),
        }
    }

    let mut poll = options.poll.map(|every| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let mut tick = async || match poll.as_mut() {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    };
    tokio::pin!(shutdown);
    loop {
        let trigger = tokio::select! {
            () = &mut shutdown => return,
            t = rx.recv() => match t { Some(t) => t, None => return },
            () = tick() => Trigger::Change,
        };
        if matches!(trigger, Trigger::Change) {
            // Debounce: wait until the directory has been quiet for a while.
            loop {
                tokio::select! {
                    () = tokio::time::sleep(options.debounce) => break,
                    more = rx.recv() => if more.is_none() { return },
                }
            }
        } else {
            tracing::info!("SIGHUP: reloading the policy set");
        }
        let r = Arc::clone(&reloader);
        match tokio::task::spawn_blocking(move || r.reload()).await {
            Ok(_) => {}
            Err(e) => tracing::error!("policy reload task failed: {e}"),
        }
    }
}
