//! A compose file named on the command line (`-` for standard input), as `app
//! preview` and `app install` read it, with the app name it implies.

use std::io::Read;
use std::path::Path;

use cubeos_compose as compose;
use cubeos_kit::BusError;

pub struct ComposeFile {
    pub text: String,
    /// `--name`, else the file's `name:`, else its file name.
    pub name: String,
}

impl ComposeFile {
    pub fn read(file: &str, name: Option<String>) -> Result<ComposeFile, BusError> {
        let text = if file == "-" {
            // One byte past the limit is enough for the translator to refuse it.
            let mut text = String::new();
            std::io::stdin()
                .take(compose::yaml::MAX_FILE_BYTES as u64 + 1)
                .read_to_string(&mut text)
                .map_err(|e| BusError::bad_request(format!("cannot read standard input: {e}")))?;
            text
        } else {
            std::fs::read_to_string(file).map_err(|e| BusError::bad_request(format!("cannot read {file}: {e}")))?
        };
        let name = name.unwrap_or_else(|| compose::default_name(&text, Path::new(file)));
        Ok(ComposeFile { text, name })
    }
}
