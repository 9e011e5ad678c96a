//! The accounts of agents who log in by REGISTER (`agents: [{id, username,
//! password_file}]`), read at start-up, and the secret that signs the registrar's nonces.
//! The SIP side that answers REGISTER is `io::sip::registrar`.

use crate::config::LoadedConfig;
use crate::diag::{Diagnostic, Diagnostics};
use std::collections::HashMap;

pub struct Registrar {
    /// SIP user name -> (agent id, password).
    accounts: HashMap<String, (String, String)>,
    /// Signs our nonces (a fresh one per run: a restart asks phones to authenticate anew).
    secret: [u8; 16],
}

impl Registrar {
    /// The agent id and password of a SIP user name.
    pub fn account(&self, user: &str) -> Option<(&str, &str)> {
        self.accounts
            .get(user)
            .map(|(id, pw)| (id.as_str(), pw.as_str()))
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The accounts of agents who log in, their passwords read from their files.
    pub fn load(cfg: &LoadedConfig) -> Result<Option<Registrar>, Diagnostics> {
        let base = cfg.path.parent().unwrap_or(std::path::Path::new("."));
        let mut accounts = HashMap::new();
        let mut errors = Vec::new();
        for a in &cfg.config.agents {
            let (Some(user), Some(file)) = (&a.username, &a.password_file) else {
                continue;
            };
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Ok(p) if !p.trim().is_empty() => {
                    accounts.insert(user.clone(), (a.id.clone(), p.trim().to_string()));
                }
                Ok(_) => errors.push(Diagnostic::new(
                    &path,
                    format!("agents.{}: the password file is empty", a.id),
                )),
                Err(e) => errors.push(Diagnostic::new(
                    &path,
                    format!("agents.{}: cannot read the password file: {e}", a.id),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok((!accounts.is_empty()).then(|| Registrar {
            accounts,
            secret: rand::random(),
        }))
    }
}
