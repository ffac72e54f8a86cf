//! verl's Parquet: rows from [`super::rows::verl`] decoded into Arrow record batches against
//! a fixed schema (arrow-json) and written with parquet's `ArrowWriter` (Snappy). A row that
//! does not fit the schema is an error naming the column, not a silently dropped field.

use std::{fs::File, path::Path, sync::Arc};

use arrow_json::{reader::Decoder, ReaderBuilder};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::{arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties};
use serde_json::Value;

use super::ExportError;

/// Rows per record batch (and so per row group at most).
const BATCH: usize = 1024;

fn list(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        true,
    )
}

/// The columns verl's `RLHFDataset` reads (a prompt set: one row per task).
pub fn schema() -> Arc<Schema> {
    use DataType::{Int64, Utf8};
    let message = DataType::Struct(Fields::from(vec![
        Field::new("role", Utf8, false),
        Field::new("content", Utf8, false),
    ]));
    Arc::new(Schema::new(vec![
        Field::new("data_source", Utf8, false),
        Field::new(
            "prompt",
            DataType::List(Arc::new(Field::new("item", message, true))),
            false,
        ),
        Field::new("ability", Utf8, false),
        Field::new(
            "reward_model",
            DataType::Struct(Fields::from(vec![
                Field::new("style", Utf8, false),
                Field::new("ground_truth", Utf8, true),
            ])),
            false,
        ),
        Field::new(
            "extra_info",
            DataType::Struct(Fields::from(vec![
                Field::new("split", Utf8, false),
                Field::new("index", Int64, false),
                Field::new("task_id", Utf8, false),
                Field::new("task_hash", Utf8, false),
                Field::new("verifier", Utf8, false),
                list("tools", Utf8),
            ])),
            false,
        ),
    ]))
}

/// Writes verl rows to a Parquet file.
pub(super) struct VerlWriter {
    decoder: Decoder,
    writer: ArrowWriter<File>,
    pending: usize,
}

impl VerlWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, ExportError> {
        let schema = schema();
        let file = File::create(path).map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| ExportError::Parquet(e.to_string()))?;
        let decoder = ReaderBuilder::new(schema)
            .with_batch_size(BATCH)
            .with_strict_mode(true)
            .build_decoder()
            .map_err(|e| ExportError::Parquet(e.to_string()))?;
        Ok(Self {
            decoder,
            writer,
            pending: 0,
        })
    }

    /// Adds one row.
    pub fn push(&mut self, row: &Value) -> Result<(), ExportError> {
        self.decoder
            .serialize(std::slice::from_ref(row))
            .map_err(|e| {
                ExportError::Parquet(format!("a verl row does not fit the Parquet schema: {e}"))
            })?;
        self.pending += 1;
        if self.pending >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        let parquet = |e: &dyn std::fmt::Display| ExportError::Parquet(e.to_string());
        if let Some(batch) = self.decoder.flush().map_err(|e| parquet(&e))? {
            self.writer.write(&batch).map_err(|e| parquet(&e))?;
        }
        self.pending = 0;
        Ok(())
    }

    /// Writes the footer.
    pub fn finish(mut self) -> Result<(), ExportError> {
        self.flush()?;
        self.writer
            .close()
            .map_err(|e| ExportError::Parquet(e.to_string()))?;
        Ok(())
    }
}
