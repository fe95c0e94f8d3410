//! Parquet files → rows of `serde_json::Value` objects (column order kept).
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{self as dt, DataType};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Column names of a parquet file (from its Arrow schema).
pub fn columns(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).map_err(|e| Error::file(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::file(path, format!("not a readable parquet file: {e}")))?;
    Ok(builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

/// Number of rows of a parquet file, from its footer (no row is decoded).
pub fn num_rows(path: &Path) -> Result<usize> {
    let file = File::open(path).map_err(|e| Error::file(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::file(path, format!("not a readable parquet file: {e}")))?;
    usize::try_from(builder.metadata().file_metadata().num_rows())
        .map_err(|_| Error::file(path, "negative row count in the parquet footer"))
}

/// Read every row of a parquet file. `required` columns must exist (the error names the column
/// and the file).
pub fn read_rows(path: &Path, required: &[String]) -> Result<Vec<Value>> {
    let builder = open(path, required)?;
    decode(path, builder)
}

/// The rows at `indices` (ascending, distinct) of a parquet file, in that order. Only the row
/// groups that hold them are read, and inside those only the selected rows are decoded.
pub fn read_rows_at(path: &Path, required: &[String], indices: &[usize]) -> Result<Vec<Value>> {
    let builder = open(path, required)?;
    if indices.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::file(
            path,
            "row indices must be ascending and distinct",
        ));
    }
    let sizes: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows().max(0) as usize)
        .collect();
    let total: usize = sizes.iter().sum();
    if let Some(&last) = indices.last() {
        if last >= total {
            return Err(Error::file(
                path,
                format!("row {last} requested but the file has {total} rows"),
            ));
        }
    }
    // Row groups holding a selected row; the selection then runs over their concatenation.
    let (mut groups, mut selectors) = (Vec::new(), Vec::new());
    let (mut start, mut next) = (0usize, 0usize);
    for (g, &size) in sizes.iter().enumerate() {
        let end = start + size;
        let mut pos = start;
        let mut any = false;
        while next < indices.len() && indices[next] < end {
            let i = indices[next];
            if i > pos {
                selectors.push(RowSelector::skip(i - pos));
            }
            selectors.push(RowSelector::select(1));
            pos = i + 1;
            next += 1;
            any = true;
        }
        if any {
            groups.push(g);
            if end > pos {
                selectors.push(RowSelector::skip(end - pos));
            }
        }
        start = end;
    }
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let builder = builder
        .with_row_groups(groups)
        .with_row_selection(RowSelection::from(selectors));
    decode(path, builder)
}

fn open(path: &Path, required: &[String]) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| Error::file(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::file(path, format!("not a readable parquet file: {e}")))?;
    let schema = builder.schema().clone();
    for col in required {
        if schema.field_with_name(col).is_err() {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(Error::file(
                path,
                format!("missing column `{col}` (columns: {})", have.join(", ")),
            ));
        }
    }
    Ok(builder)
}

fn decode(path: &Path, builder: ParquetRecordBatchReaderBuilder<File>) -> Result<Vec<Value>> {
    let reader = builder
        .build()
        .map_err(|e| Error::file(path, format!("cannot read parquet: {e}")))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::file(path, format!("cannot read parquet: {e}")))?;
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for i in 0..batch.num_rows() {
            let mut obj = Map::new();
            for (name, col) in names.iter().zip(batch.columns()) {
                let v = value_at(col, i)
                    .map_err(|m| Error::file(path, format!("column `{name}`: {m}")))?;
                obj.insert(name.clone(), v);
            }
            rows.push(Value::Object(obj));
        }
    }
    Ok(rows)
}

fn float(x: f64) -> Value {
    Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn value_at(arr: &ArrayRef, i: usize) -> std::result::Result<Value, String> {
    if arr.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match arr.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(arr.as_boolean().value(i)),
        DataType::Int8 => Value::from(arr.as_primitive::<dt::Int8Type>().value(i)),
        DataType::Int16 => Value::from(arr.as_primitive::<dt::Int16Type>().value(i)),
        DataType::Int32 => Value::from(arr.as_primitive::<dt::Int32Type>().value(i)),
        DataType::Int64 => Value::from(arr.as_primitive::<dt::Int64Type>().value(i)),
        DataType::UInt8 => Value::from(arr.as_primitive::<dt::UInt8Type>().value(i)),
        DataType::UInt16 => Value::from(arr.as_primitive::<dt::UInt16Type>().value(i)),
        DataType::UInt32 => Value::from(arr.as_primitive::<dt::UInt32Type>().value(i)),
        DataType::UInt64 => Value::from(arr.as_primitive::<dt::UInt64Type>().value(i)),
        DataType::Float16 => float(arr.as_primitive::<dt::Float16Type>().value(i).to_f64()),
        DataType::Float32 => float(arr.as_primitive::<dt::Float32Type>().value(i) as f64),
        DataType::Float64 => float(arr.as_primitive::<dt::Float64Type>().value(i)),
        DataType::Utf8 => Value::String(arr.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(arr.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::String(arr.as_string_view().value(i).to_string()),
        DataType::List(_) => list(&arr.as_list::<i32>().value(i))?,
        DataType::LargeList(_) => list(&arr.as_list::<i64>().value(i))?,
        DataType::FixedSizeList(_, _) => list(&arr.as_fixed_size_list().value(i))?,
        DataType::Struct(fields) => {
            let s = arr.as_struct();
            let mut obj = Map::new();
            for (f, col) in fields.iter().zip(s.columns()) {
                obj.insert(f.name().clone(), value_at(col, i)?);
            }
            Value::Object(obj)
        }
        DataType::Dictionary(_, _) => {
            let d = arr.as_any_dictionary();
            let key = d.normalized_keys()[i];
            value_at(d.values(), key)?
        }
        other => return Err(format!("unsupported Arrow type {other}")),
    })
}

fn list(values: &ArrayRef) -> std::result::Result<Value, String> {
    (0..values.len())
        .map(|j| value_at(values, j))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Value::Array)
}
