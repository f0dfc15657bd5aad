//! clap's value parsers, made to record in a refusal the variable the refused value came from,
//! so that [`crate::cli::refusal`] can name it: clap's own error says which option and which
//! value, but not where the value came from.

use std::ffi::OsStr;

use clap::Arg;
use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;

/// `parser`, recording in its errors the variable a refused value came from.
pub fn sourced<P: TypedValueParser>(parser: P) -> Sourced<P> {
    Sourced(parser)
}

/// A value parser that records the variable a refused value came from: see [`sourced`].
#[derive(Clone)]
pub struct Sourced<P>(P);

impl<P: TypedValueParser> TypedValueParser for Sourced<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        self.0.parse_ref(cmd, arg, value)
    }

    fn parse_ref_(
        &self,
        cmd: &clap::Command,
        arg: Option<&Arg>,
        value: &OsStr,
        source: ValueSource,
    ) -> Result<Self::Value, clap::Error> {
        self.0.parse_ref_(cmd, arg, value, source).map_err(|mut err| {
            if let (ValueSource::EnvVariable, Some(var)) = (source, arg.and_then(Arg::get_env)) {
                let var = var.to_string_lossy().into_owned();
                err.insert(ContextKind::Custom, ContextValue::String(var));
            }
            err
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        self.0.possible_values()
    }
}
