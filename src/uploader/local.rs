//! Local storage: the file stays where it was recorded; its metadata goes next to it.

use futures::future::BoxFuture;

use super::{Delivery, DeliveryError, FinishedRecording};

#[derive(Debug, Clone, Default)]
pub struct LocalStore;

impl Delivery for LocalStore {
    fn accept(&self, rec: FinishedRecording) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async move {
            let meta = std::path::Path::new(&rec.file_path).with_extension("json");
            let body = serde_json::to_vec_pretty(&rec).map_err(|e| DeliveryError::Io {
                path: meta.display().to_string(),
                source: std::io::Error::other(e),
            })?;
            let tmp = meta.with_extension("json.tmp");
            let io = |source| DeliveryError::Io {
                path: meta.display().to_string(),
                source,
            };
            tokio::fs::write(&tmp, body).await.map_err(io)?;
            tokio::fs::rename(&tmp, &meta).await.map_err(io)?;
            tracing::info!(
                recording_id = %rec.recording_id,
                path = %rec.file_path,
                "recording stored locally (no url)"
            );
            Ok(())
        })
    }
}
