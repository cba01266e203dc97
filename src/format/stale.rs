//! Naming and clean-up of temporary build files. A build killed with SIGKILL cannot remove its
//! temporary file; the next build in the same directory removes those whose writer is gone.

use std::path::Path;

/// Suffix of every temporary index file.
pub const SUFFIX: &str = ".ptsel-tmp";

/// Prefix of the temporary files for destination file name `name`, including this process id.
pub fn prefix(name: &str) -> String {
    format!(".{name}.{}.", std::process::id())
}

/// Remove temporary files for `name` in `dir` whose writing process no longer runs.
pub fn clean(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let head = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&head) else {
            continue;
        };
        if !file_name.ends_with(SUFFIX) {
            continue;
        }
        let pid = rest.split('.').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !process_alive(p)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists() || !Path::new("/proc/self").exists()
}
