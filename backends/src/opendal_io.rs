//! Writing through OpenDAL, shared by the drivers built on it (local, s3).

use futures_util::TryStreamExt;

use crate::{Progress, Result, Source, StorageError};

/// Streams `source` into `writer` and closes it, reporting progress. On any failure the
/// writer is aborted, so that nothing is left behind (a partial file, an incomplete multipart
/// upload); `map_err` turns OpenDAL's errors into the driver's.
pub(crate) async fn write_source(
    mut writer: opendal::Writer,
    source: &Source,
    progress: Progress<'_>,
    map_err: impl Fn(opendal::Error) -> StorageError,
) -> Result<u64> {
    let mut chunks = source.chunks();
    let mut sent = 0u64;
    loop {
        let chunk = match chunks.try_next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e);
            }
        };
        sent += chunk.len() as u64;
        if let Err(e) = writer.write(chunk).await {
            let _ = writer.abort().await;
            return Err(map_err(e));
        }
        progress(sent);
    }
    if let Err(e) = writer.close().await {
        // An upload left incomplete is billed until aborted; one that completed with its
        // answer lost has nothing left to abort.
        let _ = writer.abort().await;
        return Err(map_err(e));
    }
    Ok(sent)
}
