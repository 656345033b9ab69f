//! `${env:VAR}` / `${env:VAR:-default}` substitution in parsed YAML configuration values.
