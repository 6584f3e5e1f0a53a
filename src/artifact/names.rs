//! What W&B accepts as an artifact's name, type, aliases and tags, checked before anything is
//! written so that a bad one fails where it is given, not at delivery.

use crate::error::Error;

const MAX_LEN: usize = 128;

/// A collection name: `[A-Za-z0-9_.-]`, at most 128 characters.
pub fn check_name(name: &str) -> Result<(), Error> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > MAX_LEN || !name.chars().all(valid) {
        return Err(Error::Usage(format!(
            "artifact name {name:?} is not allowed: use 1 to {MAX_LEN} letters, digits, '_', \
             '-' or '.'"
        )));
    }
    Ok(())
}

/// A type: at most 128 characters, no `/` or `:`, and none of the types W&B keeps for itself.
pub fn check_type(artifact_type: &str, name: &str) -> Result<(), Error> {
    let refuse = |why: &str| {
        Err(Error::Usage(format!(
            "artifact type {artifact_type:?} of artifact {name:?} is not allowed: {why}"
        )))
    };
    if artifact_type.is_empty() || artifact_type.len() > MAX_LEN {
        return refuse("use 1 to 128 characters");
    }
    if artifact_type.contains(['/', ':']) {
        return refuse("it may not contain '/' or ':'");
    }
    let reserved = artifact_type.starts_with("wandb-")
        || artifact_type == "job"
        || (artifact_type == "run_table" && name.starts_with("run-"))
        || (artifact_type == "code" && name.starts_with("source-"));
    if reserved {
        return refuse("W&B reserves it for its own artifacts");
    }
    Ok(())
}

/// The aliases a version gets: those given, each checked, and `latest`, without repeats.
pub fn aliases(given: &[String], name: &str) -> Result<Vec<String>, Error> {
    let mut aliases = vec!["latest".to_string()];
    for alias in given {
        if alias.is_empty() || alias.len() > MAX_LEN || alias.contains(['/', ':']) {
            return Err(Error::Usage(format!(
                "alias {alias:?} of artifact {name:?} is not allowed: use 1 to {MAX_LEN} \
                 characters without '/' or ':'"
            )));
        }
        if !aliases.contains(alias) {
            aliases.push(alias.clone());
        }
    }
    Ok(aliases)
}

/// Tags, each words of `[-\w]` separated by spaces, without repeats.
pub fn tags(given: &[String], name: &str) -> Result<Vec<String>, Error> {
    let word_char = |c: char| c == '-' || c == '_' || c.is_alphanumeric();
    let mut tags: Vec<String> = Vec::new();
    for tag in given {
        let valid = !tag.is_empty()
            && tag.len() <= MAX_LEN
            && !tag.starts_with(' ')
            && !tag.ends_with(' ')
            && tag.chars().all(|c| c == ' ' || word_char(c));
        if !valid {
            return Err(Error::Usage(format!(
                "tag {tag:?} of artifact {name:?} is not allowed: use words of letters, digits, \
                 '_' or '-', separated by spaces"
            )));
        }
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_and_types_as_wandb_accepts_them() {
        assert!(check_name("model-v2.pt_final").is_ok());
        for bad in ["", "a/b", "a:b", "a b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_type("model", "m").is_ok());
        assert!(check_type("run_table", "tables").is_ok());
        for (bad, name) in [
            ("wandb-history", "m"),
            ("job", "m"),
            ("run_table", "run-x"),
            ("code", "source-x"),
            ("a/b", "m"),
            ("", "m"),
        ] {
            assert!(check_type(bad, name).is_err(), "{bad}");
        }
    }

    #[test]
    fn latest_is_always_an_alias_and_tags_are_words() {
        let given = strings(&["best", "latest", "best"]);
        assert_eq!(aliases(&given, "m").unwrap(), strings(&["latest", "best"]));
        assert!(aliases(&strings(&["v:1"]), "m").is_err());
        assert!(aliases(&strings(&["a/b"]), "m").is_err());
        let given = strings(&["fine tuned", "é-1", "fine tuned", "two  spaces"]);
        let expected = strings(&["fine tuned", "é-1", "two  spaces"]);
        assert_eq!(tags(&given, "m").unwrap(), expected);
        for bad in ["trail ", " lead", "semi;colon", ""] {
            let err = tags(&strings(&[bad]), "m").unwrap_err().to_string();
            assert!(err.contains("artifact \"m\""), "{err}");
        }
    }
}
