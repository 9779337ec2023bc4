// Umbrella header for the syncconfig library (syncconfig::syncconfig). EmbeddedPostgres is not
// part of it: include "syncconfig/embedded_postgres.h" and link syncconfig::embedded.
#pragma once

#include "syncconfig/config.h"
#include "syncconfig/error.h"
#include "syncconfig/options.h"
#include "syncconfig/pool_manager.h"
#include "syncconfig/remote_store.h"
#include "syncconfig/store.h"
#include "syncconfig/sync_map.h"
