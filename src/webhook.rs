//! Handover notifications: one HTTP POST of a JSON body to the webhook the operator is configured
//! with (`--handover-webhook-url`): a generic JSON document, or a Microsoft Teams message (an
//! Adaptive Card, the format Teams incoming webhooks and Workflows webhooks accept). The URL is a
//! credential (whoever has it can post to the channel): it is held as a [`SecretString`] and never
//! printed, not even in errors (reqwest's errors name the URL; they are stripped of it here).

use std::path::Path;
use std::time::Duration;

use crate::graph::SecretString;

/// What the webhook's body looks like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookFormat {
    /// A generic JSON document (`event`, `bankClient`, `newKeyId`, ...).
    #[default]
    Json,
    /// A Microsoft Teams message holding an Adaptive Card.
    Teams,
}

/// A configured webhook.
#[derive(Clone, Debug)]
pub struct Webhook {
    url: SecretString,
    pub format: WebhookFormat,
    http: reqwest::Client,
}

/// Why a notification was not delivered. Never names the URL.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook URL is not an http(s) URL (value not shown)")]
    InvalidUrl,
    #[error("cannot build the webhook's HTTP client: {0}")]
    Client(String),
    #[error("the webhook answered HTTP {0}")]
    Status(u16),
    #[error("the webhook request failed: {0}")]
    Transport(String),
}

/// How long one delivery may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

impl Webhook {
    /// A webhook posting to `url` (http or https), trusting the system's CAs and `extra_ca_pem`.
    pub fn new(
        url: SecretString,
        format: WebhookFormat,
        extra_ca_pem: Option<&Path>,
    ) -> Result<Self, WebhookError> {
        let parsed = url::Url::parse(url.expose()).map_err(|_| WebhookError::InvalidUrl)?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(WebhookError::InvalidUrl);
        }
        let http = crate::graph::build_http_client(extra_ca_pem, WEBHOOK_TIMEOUT)
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Webhook { url, format, http })
    }

    /// POSTs `body` as JSON; any 2xx answer is a delivery.
    pub async fn send(&self, body: &serde_json::Value) -> Result<(), WebhookError> {
        let response = self
            .http
            .post(self.url.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| WebhookError::Transport(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(WebhookError::Status(status.as_u16()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_and_the_url_is_never_printed() {
        for bad in ["not a url", "ftp://example.com/x", "file:///etc/passwd"] {
            let err = Webhook::new(SecretString::new(bad), WebhookFormat::Json, None).unwrap_err();
            assert!(!err.to_string().contains(bad), "{err}");
        }
        let hook = Webhook::new(
            SecretString::new("https://example.webhook.office.com/webhookb2/s3cr3t-token"),
            WebhookFormat::Teams,
            None,
        )
        .unwrap();
        assert!(!format!("{hook:?}").contains("s3cr3t-token"));
    }

    #[tokio::test]
    async fn a_failed_delivery_does_not_name_the_url() {
        // Nothing listens on port 9 of localhost (discard): the connection is refused.
        let hook = Webhook::new(
            SecretString::new("http://127.0.0.1:9/hook/s3cr3t-token"),
            WebhookFormat::Json,
            None,
        )
        .unwrap();
        let err = hook.send(&serde_json::json!({})).await.unwrap_err();
        assert!(!err.to_string().contains("s3cr3t-token"), "{err}");
    }
}
