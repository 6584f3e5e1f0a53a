//! How Lambda runs this function (`AWS_LAMBDA_INITIALIZATION_TYPE`), which decides how runs
//! are delivered: on-demand and provisioned environments freeze between invocations, so an
//! extension delivers after each response; a SnapStart environment is cloned from a snapshot
//! of its INIT; a Managed Instances environment runs one worker process per concurrent
//! invocation and never freezes.

/// The execution model, from the environment Lambda gives the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecutionModel {
    /// On-demand or provisioned concurrency (and any type this code does not know): one
    /// invocation at a time, frozen in between.
    OnDemand,
    /// Restored from a snapshot taken after INIT (python3.12+).
    SnapStart,
    /// Lambda Managed Instances (python3.13+): `max_concurrency` worker processes, each one
    /// invocation at a time, never frozen, sharing `/tmp`.
    ManagedInstances { max_concurrency: u32 },
}

impl ExecutionModel {
    /// The model `env` describes; an error says what is wrong with it (a Managed Instances
    /// concurrency that is not a positive number).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let kind = env("AWS_LAMBDA_INITIALIZATION_TYPE").unwrap_or_default();
        let concurrency = env("AWS_LAMBDA_MAX_CONCURRENCY");
        if kind == "snap-start" {
            return Ok(Self::SnapStart);
        }
        if kind != "lambda-managed-instances" && concurrency.is_none() {
            return Ok(Self::OnDemand);
        }
        let text = concurrency.unwrap_or_default();
        match text.trim().parse::<u32>() {
            Ok(max_concurrency) if max_concurrency > 0 => {
                Ok(Self::ManagedInstances { max_concurrency })
            }
            _ => Err(format!(
                "AWS_LAMBDA_MAX_CONCURRENCY is {text:?}, not a number of worker processes"
            )),
        }
    }

    /// The model of this process's environment.
    pub fn current() -> Result<Self, String> {
        Self::from_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(vars: &[(&str, &str)]) -> Result<ExecutionModel, String> {
        ExecutionModel::from_env(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn each_initialization_type_is_its_model() {
        assert_eq!(model(&[]), Ok(ExecutionModel::OnDemand));
        let kind = "AWS_LAMBDA_INITIALIZATION_TYPE";
        assert_eq!(model(&[(kind, "on-demand")]), Ok(ExecutionModel::OnDemand));
        let provisioned = model(&[(kind, "provisioned-concurrency")]);
        assert_eq!(provisioned, Ok(ExecutionModel::OnDemand));
        assert_eq!(
            model(&[(kind, "snap-start")]),
            Ok(ExecutionModel::SnapStart)
        );
        let managed = model(&[
            (kind, "lambda-managed-instances"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "16"),
        ]);
        let expected = ExecutionModel::ManagedInstances {
            max_concurrency: 16,
        };
        assert_eq!(managed, Ok(expected.clone()));
        // The runtime client keys on the concurrency alone.
        assert_eq!(model(&[("AWS_LAMBDA_MAX_CONCURRENCY", "16")]), Ok(expected));
    }

    #[test]
    fn a_concurrency_that_is_not_a_positive_number_is_named() {
        for bad in ["", "lots", "0", "-4", "2.5"] {
            let kind = ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances");
            let err = model(&[kind, ("AWS_LAMBDA_MAX_CONCURRENCY", bad)]).unwrap_err();
            assert!(err.contains("AWS_LAMBDA_MAX_CONCURRENCY"), "{err}");
        }
    }
}
