//! Small helpers that several modules share and no one module owns.

/// `ToSql` and `FromSql` for an enum stored as its `as_str` text, for a type
/// with `as_str(self) -> &'static str` and `ALL` (every value). Reading a
/// text that names none of them fails the read (the schema's CHECK
/// constraints keep stored values to the names).
macro_rules! stored_as_text {
    ($type:ty, $what:literal) => {
        impl rusqlite::types::ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $type {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<$type> {
                let text = value.as_str()?;
                <$type>::ALL
                    .into_iter()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| {
                        rusqlite::types::FromSqlError::Other(
                            format!(concat!($what, " `{}`"), text).into(),
                        )
                    })
            }
        }
    };
}

pub(crate) use stored_as_text;
