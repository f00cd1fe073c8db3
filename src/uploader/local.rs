//! Local storage: the file stays where it was recorded; its metadata goes next to it.

use futures::future::BoxFuture;

use super::{Delivery, DeliveryError, FinishedRecording};

#[derive(Debug, Clone, Default)]
pub struct LocalStore;

impl LocalStore {
    /// `<recording>.json` beside `<recording>.<ext>`.
    pub fn sidecar_path(file_path: &str) -> String {
        std::path::Path::new(file_path)
            .with_extension("json")
            .to_string_lossy()
            .into_owned()
    }

    /// Writes the metadata file atomically (temporary file, then rename).
    pub async fn write_sidecar(rec: &FinishedRecording) -> Result<(), DeliveryError> {
        let meta = Self::sidecar_path(&rec.file_path);
        let shown = rec.redacted();
        let io = |source| DeliveryError::Io {
            path: meta.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(&shown).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = format!("{meta}.tmp");
        tokio::fs::write(&tmp, body).await.map_err(io)?;
        tokio::fs::rename(&tmp, &meta).await.map_err(io)?;
        Ok(())
    }
}

impl Delivery for LocalStore {
    fn accept(&self, rec: FinishedRecording) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async move {
            Self::write_sidecar(&rec).await?;
            tracing::info!(
                recording_id = %rec.recording_id,
                path = %rec.file_path,
                "recording stored locally"
            );
            Ok(())
        })
    }
}
