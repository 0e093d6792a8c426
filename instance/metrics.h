// The instance's Prometheus metrics, rendered from the last gathered InstanceFacts and checks.
//
// Names follow postgres_exporter where it has one, so existing dashboards and alerts work:
//   pg_up, pg_replication_is_replica, pg_replication_lag_seconds (a replica's own replay delay,
//   0 when everything received is replayed), pg_stat_activity_count{datname,state},
//   pg_stat_database_xact_commit / _xact_rollback / _numbackends{datname},
//   pg_database_size_bytes{datname}, pg_settings_max_connections,
//   pg_settings_superuser_reserved_connections.
// Petrel's own, for what postgres_exporter has no name for:
//   petrel_instance_info{name,cluster,version} 1
//   petrel_instance_role{role="primary"|"replica"|"none"} 1 for the observed role, else 0
//   petrel_instance_fenced
//   petrel_instance_wal_position_bytes{kind="current"|"received"|"replayed"}
//   petrel_instance_replication_lag_bytes (replica: received end - replayed)
//   petrel_instance_standby_streaming{standby,sync_state}, and per standby on a primary:
//   petrel_instance_standby_lag_bytes{standby}, petrel_instance_standby_lag_seconds{standby}
//   petrel_instance_check_status{check} 0 passing, 1 warning, 2 critical
//   petrel_instance_volume_size_bytes, petrel_instance_volume_free_bytes,
//   petrel_instance_load1/5/15, petrel_instance_pressure_ratio{resource} (avg60, 0..1)
//   petrel_instance_facts_age_seconds (how old the gathered facts are)
// Series that need SQL are left out while postgres does not answer (pg_up says so).
//
// Thread-safety: a pure function.
#pragma once

#include <string>
#include <vector>

#include "api/instance.h"
#include "instance/checks.h"

namespace petrel {

// Prometheus text format 0.0.4. `age_seconds`: time since `facts` were gathered.
std::string RenderInstanceMetrics(const InstanceFacts& facts,
                                  const std::vector<HealthCheck>& checks, double age_seconds);

// The numeric value petrel_instance_check_status uses for a state.
double CheckStateValue(CheckState s);

}  // namespace petrel
