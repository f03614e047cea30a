//! The stacks directory through the `files` capability: which folders are
//! stacks, their compose file and `.env`, and saving a candidate only once
//! both this plugin's checks and Compose's own `config` accept it.

use wakedock_plugin_sdk::{compose, files, Error};

use crate::model::check_name;
use crate::validate::{self, FieldError};

/// The file names Compose looks for, in its order.
pub const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Candidates are checked under these names in the stack's folder, then
/// renamed over the real files (atomic: readers see old or new).
const CANDIDATE_COMPOSE: &str = ".wakedock-candidate.compose.yaml";
const CANDIDATE_ENV: &str = ".wakedock-candidate.env";

/// A folder of the stacks directory.
#[derive(Debug, Clone)]
pub struct Folder {
    pub name: String,
    /// Its compose file, if it has one.
    pub compose_file: Option<String>,
}

/// Every stack folder, plus a message for each folder that cannot be one.
pub fn folders() -> Result<(Vec<Folder>, Vec<String>), String> {
    let entries =
        files::list("").map_err(|e| format!("reading the stacks directory: {}", e.describe()))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for e in entries.into_iter().filter(|e| e.is_dir) {
        if e.name.starts_with('.') {
            continue;
        }
        if let Err(m) = check_name(&e.name) {
            problems.push(format!(
                "The folder {} is not used: {m}. Rename it to use it as a stack.",
                e.name
            ));
            continue;
        }
        let compose_file = compose_file_of(&e.name);
        out.push(Folder {
            name: e.name,
            compose_file,
        });
    }
    Ok((out, problems))
}

/// The first compose file Compose would use in the folder `name`.
pub fn compose_file_of(name: &str) -> Option<String> {
    let entries = files::list(name).ok()?;
    COMPOSE_FILES
        .iter()
        .find(|f| entries.iter().any(|e| !e.is_dir && e.name == **f))
        .map(|f| (*f).to_owned())
}

/// Whether the stacks directory has a folder `name`.
pub fn exists(name: &str) -> bool {
    files::stat(name).is_ok_and(|e| e.is_dir)
}

/// The stack's compose file name and text, and its `.env` (empty if none).
pub fn read(name: &str) -> Result<(Option<String>, String, String), String> {
    let compose_file = compose_file_of(name);
    let text = match &compose_file {
        Some(f) => files::read_text(&format!("{name}/{f}"))
            .map_err(|e| format!("reading {f}: {}", e.describe()))?
            .unwrap_or_default(),
        None => String::new(),
    };
    let env = files::read_text(&format!("{name}/.env"))
        .map_err(|e| format!(".env: {}", e.describe()))?
        .unwrap_or_default();
    Ok((compose_file, text, env))
}

fn write_err(what: &str, e: Error) -> Vec<FieldError> {
    vec![FieldError::new(
        what,
        format!("could not be written: {}", e.describe()),
    )]
}

/// Checks `compose_text` and `env_text` for the stack `name` and, when
/// everything (Compose's `config` last) accepts them, writes them as the
/// stack's compose file and `.env`. `create`: the folder must not exist
/// yet and is made (and removed again if the files are refused).
/// Nothing reaches the engine.
pub fn save(
    name: &str,
    compose_text: &str,
    env_text: &str,
    create: bool,
) -> Result<(), Vec<FieldError>> {
    check_name(name).map_err(|m| vec![FieldError::new("name", m)])?;
    let mut errs = validate::compose(name, compose_text);
    errs.extend(validate::env(env_text));
    if !errs.is_empty() {
        return Err(errs);
    }
    if create {
        if files::stat(name).is_ok() {
            return Err(vec![FieldError::new(
                "name",
                format!("a stack (or file) named {name} exists already"),
            )]);
        }
        files::create_dir(name).map_err(|e| write_err("name", e))?;
    } else if !exists(name) {
        return Err(vec![FieldError::new(
            "name",
            format!("there is no stack {name}"),
        )]);
    }
    let result = check_and_write(name, compose_text, env_text);
    if result.is_err() && create {
        let _ = files::remove(name, true);
    }
    result
}

fn check_and_write(name: &str, compose_text: &str, env_text: &str) -> Result<(), Vec<FieldError>> {
    let cand_compose = format!("{name}/{CANDIDATE_COMPOSE}");
    let cand_env = format!("{name}/{CANDIDATE_ENV}");
    let cleanup = || {
        let _ = files::remove(&cand_compose, false);
        let _ = files::remove(&cand_env, false);
    };
    files::write(&cand_compose, compose_text.as_bytes()).map_err(|e| write_err("compose", e))?;
    if let Err(e) = files::write(&cand_env, env_text.as_bytes()) {
        cleanup();
        return Err(write_err("env", e));
    }
    let checked = compose::config(name, &[CANDIDATE_COMPOSE.to_owned()], Some(CANDIDATE_ENV));
    if let Err(e) = checked {
        cleanup();
        return Err(match e {
            compose::ComposeError::InvalidProject(lines) => validate::from_compose(&lines),
            other => vec![FieldError::new(
                "compose",
                format!(
                    "could not be checked by Docker Compose: {}",
                    other.describe()
                ),
            )],
        });
    }
    // Accepted: the candidate replaces the stack's compose file (keeping
    // its name, e.g. docker-compose.yml), and the env file (none when
    // empty).
    let target = compose_file_of(name).unwrap_or_else(|| COMPOSE_FILES[0].to_owned());
    if let Err(e) = files::rename(&cand_compose, &format!("{name}/{target}")) {
        cleanup();
        return Err(write_err("compose", e));
    }
    let env_path = format!("{name}/.env");
    let env_result = if env_text.trim().is_empty() {
        let _ = files::remove(&cand_env, false);
        files::remove(&env_path, false).map(|_| ())
    } else {
        files::rename(&cand_env, &env_path)
    };
    env_result.map_err(|e| {
        cleanup();
        write_err("env", e)
    })
}

/// Removes the stack's folder and everything in it.
pub fn remove(name: &str) -> Result<(), String> {
    files::remove(name, true)
        .map(|_| ())
        .map_err(|e| format!("removing the folder {name}: {}", e.describe()))
}
