// PgAdmin over libpq (pg/attach_sql.h): the production implementation. Opens one connection
// to the target's `postgres` database per PgAdmin, plus a short-lived one per database when a
// step must run inside it (grants, REASSIGN/DROP OWNED). Every connect has a 5 s timeout and
// every statement a 30 s statement_timeout.
// Thread-safety: one thread at a time per PgAdmin.
#pragma once

#include "reconcilers/pg_admin.h"

namespace petrel {

// The factory the controller wires into the attachment reconciler.
PgAdminFactory LibpqPgAdminFactory();

}  // namespace petrel
