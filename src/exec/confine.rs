//! Where a step's process is confined: the sandbox plan for a step (made once
//! per run), and flowc's own state that no step may write.

use super::scheduler::Runner;

impl Runner<'_> {
    /// The sandbox plan for `sandbox` (a step's, or its skill policy's)
    /// under the run's policy; refused when a written limit cannot be held.
    pub fn sandbox_plan(
        &mut self,
        sandbox: &crate::ir::Sandbox,
    ) -> Result<crate::sandbox::Plan, String> {
        if let Some((_, plan)) = self.plans.iter().find(|(s, _)| s == sandbox) {
            return plan.clone();
        }
        let run = &self.root_policy.sandbox;
        let plan = crate::sandbox::plan_for(sandbox, run).map(|mut plan| {
            let (state, secret) = self.state_paths();
            plan.protect_state(&state, &secret);
            plan
        });
        self.plans.push((sandbox.clone(), plan.clone()));
        plan
    }

    /// flowc's own state, which no step may write: the journal's directory
    /// (journal, its log, the head mark, snapshots), the secret store and
    /// the key file.
    fn state_paths(&self) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
        let mut paths = Vec::new();
        if self.journal.is_postgres() {
            // The journal is on a server; flowc's files here are in `.flowc/`.
            paths.push(crate::journal::state_dir(self.journal.path()));
        } else if let Some(dir) = self.journal.path().parent() {
            let dir = if dir.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                dir
            };
            // A dedicated state directory (`.flowc/`, the default) is protected
            // whole, so a step can neither write nor swap anything in it.
            // Anywhere else the directory holds other things (a step's output
            // beside `--journal /tmp/x/journal.db`): only flowc's own files.
            if dir.file_name().is_some_and(|n| n == ".flowc") {
                paths.push(dir.to_path_buf());
            } else {
                let p = self.journal.path().display().to_string();
                for suffix in ["", "-wal", "-shm", "-head"] {
                    paths.push(std::path::PathBuf::from(format!("{p}{suffix}")));
                }
                paths.push(self.snapshot_store());
                paths.push(crate::cache::dir_for(self.journal.path()));
            }
        }
        // The store and the key file are hidden too: a secret reaches only
        // the steps that name it, through `env`.
        let mut secret = vec![crate::secrets::default_path()];
        if let Some(key) = std::env::var_os("FLOWC_SECRETS_KEY_FILE") {
            secret.push(key.into());
        }
        paths.extend(secret.iter().cloned());
        (paths, secret)
    }
}
