//! `wandb.Html`: the page text, with wandb's stylesheet and link target injected so it
//! renders in the W&B UI as the official SDK's pages do.

const HEAD: &str = r#"<base target="_blank"><link rel="stylesheet" type="text/css" href="https://app.wandb.ai/normalize.css" />"#;

/// Inserts the head block after `<head>`, or a head after `<html>`, or before everything.
pub fn inject_head(html: &str) -> String {
    let injected = if let Some((before, after)) = html.split_once("<head>") {
        format!("{before}<head>{HEAD}{after}")
    } else if let Some((before, after)) = html.split_once("<html>") {
        format!("{before}<html><head>{HEAD}</head>{after}")
    } else {
        format!("{HEAD}{html}")
    };
    injected.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injects_where_wandb_does() {
        assert_eq!(inject_head("<p>hi</p>\n"), format!("{HEAD}<p>hi</p>"));
        assert_eq!(
            inject_head("<html><body>x</body></html>"),
            format!("<html><head>{HEAD}</head><body>x</body></html>")
        );
        assert_eq!(
            inject_head("<html><head><title>t</title></head></html>"),
            format!("<html><head>{HEAD}<title>t</title></head></html>")
        );
    }
}
