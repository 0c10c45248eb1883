//! Where a process stands in its cluster: rank, size, coordinator, token.
//!
//! Read from the environment the launcher sets: `dagger run -n N` sets
//! `DAGGER_RANK`, `DAGGER_SIZE`, `DAGGER_COORDINATOR` (host:port of rank 0's
//! bootstrap listener) and `DAGGER_CLUSTER_TOKEN`. Under Slurm or Open MPI,
//! rank and size come from `SLURM_PROCID`/`SLURM_NTASKS` or
//! `OMPI_COMM_WORLD_RANK`/`OMPI_COMM_WORLD_SIZE` instead, so `srun` and
//! `mpirun` start a cluster as they start any job; the coordinator address
//! and the token still come from `DAGGER_COORDINATOR` and
//! `DAGGER_CLUSTER_TOKEN` (export them before `srun`).

use super::ClusterError;
use std::net::SocketAddr;

/// This process's place in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEnv {
    /// This process's rank (0 drives, the others serve).
    pub rank: u32,
    /// Number of processes.
    pub size: u32,
    /// Rank 0's bootstrap address.
    pub coordinator: SocketAddr,
    /// The shared secret every rank proves it knows.
    pub token: Vec<u8>,
    /// Worker threads this rank runs tasks on (`DAGGER_THREADS`, else
    /// every core), told to the other ranks for placement.
    pub workers: u32,
}

impl ClusterEnv {
    /// Reads the environment; `Ok(None)` when this process is not part of
    /// a cluster (no rank variable set).
    pub fn from_env() -> Result<Option<ClusterEnv>, ClusterError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `var`.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ClusterEnv>, ClusterError> {
        let pairs = [
            ("DAGGER_RANK", "DAGGER_SIZE"),
            ("SLURM_PROCID", "SLURM_NTASKS"),
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ];
        let Some((rank_var, size_var)) = pairs.into_iter().find(|(r, _)| var(r).is_some()) else {
            return Ok(None);
        };
        let number = |name: &str| -> Result<u32, ClusterError> {
            let text = var(name).ok_or_else(|| {
                ClusterError::Config(format!("{rank_var} is set but {name} is not"))
            })?;
            text.trim()
                .parse()
                .map_err(|_| ClusterError::Config(format!("{name}={text} is not a number")))
        };
        let (rank, size) = (number(rank_var)?, number(size_var)?);
        if rank >= size {
            return Err(ClusterError::Config(format!(
                "{rank_var}={rank} is not below {size_var}={size}"
            )));
        }
        let coordinator = var("DAGGER_COORDINATOR").ok_or_else(|| {
            ClusterError::Config("DAGGER_COORDINATOR (rank 0's host:port) is not set".into())
        })?;
        let coordinator = std::net::ToSocketAddrs::to_socket_addrs(coordinator.as_str())
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                ClusterError::Config(format!(
                    "DAGGER_COORDINATOR={coordinator} is not a reachable host:port"
                ))
            })?;
        let token = var("DAGGER_CLUSTER_TOKEN")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ClusterError::Config("DAGGER_CLUSTER_TOKEN is not set".into()))?;
        let workers = var("DAGGER_THREADS")
            .and_then(|t| t.parse().ok())
            .filter(|&n: &u32| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        Ok(Some(ClusterEnv {
            rank,
            size,
            coordinator,
            token: token.into_bytes(),
            workers,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<ClusterEnv>, ClusterError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ClusterEnv::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn launcher_slurm_and_open_mpi_variables_give_rank_and_size() {
        let common = [
            ("DAGGER_COORDINATOR", "127.0.0.1:4000"),
            ("DAGGER_CLUSTER_TOKEN", "s3cret"),
        ];
        for (r, s) in [
            ("DAGGER_RANK", "DAGGER_SIZE"),
            ("SLURM_PROCID", "SLURM_NTASKS"),
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ] {
            let mut vars = common.to_vec();
            vars.extend([(r, "2"), (s, "3")]);
            vars.push(("DAGGER_THREADS", "5"));
            let e = env(&vars).unwrap().unwrap();
            assert_eq!((e.rank, e.size, e.workers), (2, 3, 5), "{r}");
            assert_eq!(e.token, b"s3cret");
        }
        assert_eq!(env(&common).unwrap(), None, "no rank: not a cluster");
    }

    #[test]
    fn bad_variables_are_named() {
        let err = |vars: &[(&str, &str)]| env(vars).unwrap_err().to_string();
        assert!(err(&[("DAGGER_RANK", "0")]).contains("DAGGER_SIZE"));
        assert!(err(&[("DAGGER_RANK", "3"), ("DAGGER_SIZE", "3")]).contains("not below"));
        assert!(err(&[("DAGGER_RANK", "x"), ("DAGGER_SIZE", "3")]).contains("DAGGER_RANK=x"));
        assert!(err(&[("DAGGER_RANK", "0"), ("DAGGER_SIZE", "2")]).contains("DAGGER_COORDINATOR"));
        let bad_host = [
            ("DAGGER_RANK", "0"),
            ("DAGGER_SIZE", "2"),
            ("DAGGER_COORDINATOR", "no port here"),
        ];
        assert!(err(&bad_host).contains("not a reachable host:port"));
        let no_token = [
            ("DAGGER_RANK", "0"),
            ("DAGGER_SIZE", "2"),
            ("DAGGER_COORDINATOR", "127.0.0.1:1"),
        ];
        assert!(err(&no_token).contains("DAGGER_CLUSTER_TOKEN"));
    }
}
