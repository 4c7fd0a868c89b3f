//! Tarantool's error codes (2.6.3 `errcode.h`: the 2.6.0 list plus the Raft-era additions),
//! with the printf-style templates their messages are built from. Scripts compare codes
//! (`e.code == box.error.TUPLE_FOUND`) and texts, so both must be exactly Tarantool's.

/// One error code: `box.error.NAME` without the `ER_` prefix, its number and its template.
pub struct ErrCode {
    pub name: &'static str,
    pub code: u32,
    pub template: &'static str,
}

pub const ER_UNKNOWN: u32 = 0;
pub const ER_ILLEGAL_PARAMS: u32 = 1;
pub const ER_MEMORY_ISSUE: u32 = 2;
pub const ER_TUPLE_FOUND: u32 = 3;
pub const ER_TUPLE_NOT_FOUND: u32 = 4;
pub const ER_UNSUPPORTED: u32 = 5;
pub const ER_NONMASTER: u32 = 6;
pub const ER_READONLY: u32 = 7;
pub const ER_INJECTION: u32 = 8;
pub const ER_CREATE_SPACE: u32 = 9;
pub const ER_SPACE_EXISTS: u32 = 10;
pub const ER_DROP_SPACE: u32 = 11;
pub const ER_ALTER_SPACE: u32 = 12;
pub const ER_INDEX_TYPE: u32 = 13;
pub const ER_MODIFY_INDEX: u32 = 14;
pub const ER_LAST_DROP: u32 = 15;
pub const ER_TUPLE_FORMAT_LIMIT: u32 = 16;
pub const ER_DROP_PRIMARY_KEY: u32 = 17;
pub const ER_KEY_PART_TYPE: u32 = 18;
pub const ER_EXACT_MATCH: u32 = 19;
pub const ER_INVALID_MSGPACK: u32 = 20;
pub const ER_PROC_RET: u32 = 21;
pub const ER_TUPLE_NOT_ARRAY: u32 = 22;
pub const ER_FIELD_TYPE: u32 = 23;
pub const ER_INDEX_PART_TYPE_MISMATCH: u32 = 24;
pub const ER_UPDATE_SPLICE: u32 = 25;
pub const ER_UPDATE_ARG_TYPE: u32 = 26;
pub const ER_FORMAT_MISMATCH_INDEX_PART: u32 = 27;
pub const ER_UNKNOWN_UPDATE_OP: u32 = 28;
pub const ER_UPDATE_FIELD: u32 = 29;
pub const ER_FUNCTION_TX_ACTIVE: u32 = 30;
pub const ER_KEY_PART_COUNT: u32 = 31;
pub const ER_PROC_LUA: u32 = 32;
pub const ER_NO_SUCH_PROC: u32 = 33;
pub const ER_NO_SUCH_TRIGGER: u32 = 34;
pub const ER_NO_SUCH_INDEX_ID: u32 = 35;
pub const ER_NO_SUCH_SPACE: u32 = 36;
pub const ER_NO_SUCH_FIELD_NO: u32 = 37;
pub const ER_EXACT_FIELD_COUNT: u32 = 38;
pub const ER_FIELD_MISSING: u32 = 39;
pub const ER_WAL_IO: u32 = 40;
pub const ER_MORE_THAN_ONE_TUPLE: u32 = 41;
pub const ER_ACCESS_DENIED: u32 = 42;
pub const ER_CREATE_USER: u32 = 43;
pub const ER_DROP_USER: u32 = 44;
pub const ER_NO_SUCH_USER: u32 = 45;
pub const ER_USER_EXISTS: u32 = 46;
pub const ER_PASSWORD_MISMATCH: u32 = 47;
pub const ER_UNKNOWN_REQUEST_TYPE: u32 = 48;
pub const ER_UNKNOWN_SCHEMA_OBJECT: u32 = 49;
pub const ER_CREATE_FUNCTION: u32 = 50;
pub const ER_NO_SUCH_FUNCTION: u32 = 51;
pub const ER_FUNCTION_EXISTS: u32 = 52;
pub const ER_BEFORE_REPLACE_RET: u32 = 53;
pub const ER_MULTISTATEMENT_TRANSACTION: u32 = 54;
pub const ER_TRIGGER_EXISTS: u32 = 55;
pub const ER_USER_MAX: u32 = 56;
pub const ER_NO_SUCH_ENGINE: u32 = 57;
pub const ER_RELOAD_CFG: u32 = 58;
pub const ER_CFG: u32 = 59;
pub const ER_SAVEPOINT_EMPTY_TX: u32 = 60;
pub const ER_NO_SUCH_SAVEPOINT: u32 = 61;
pub const ER_UNKNOWN_REPLICA: u32 = 62;
pub const ER_REPLICASET_UUID_MISMATCH: u32 = 63;
pub const ER_INVALID_UUID: u32 = 64;
pub const ER_REPLICASET_UUID_IS_RO: u32 = 65;
pub const ER_INSTANCE_UUID_MISMATCH: u32 = 66;
pub const ER_REPLICA_ID_IS_RESERVED: u32 = 67;
pub const ER_INVALID_ORDER: u32 = 68;
pub const ER_MISSING_REQUEST_FIELD: u32 = 69;
pub const ER_IDENTIFIER: u32 = 70;
pub const ER_DROP_FUNCTION: u32 = 71;
pub const ER_ITERATOR_TYPE: u32 = 72;
pub const ER_REPLICA_MAX: u32 = 73;
pub const ER_INVALID_XLOG: u32 = 74;
pub const ER_INVALID_XLOG_NAME: u32 = 75;
pub const ER_INVALID_XLOG_ORDER: u32 = 76;
pub const ER_NO_CONNECTION: u32 = 77;
pub const ER_TIMEOUT: u32 = 78;
pub const ER_ACTIVE_TRANSACTION: u32 = 79;
pub const ER_CURSOR_NO_TRANSACTION: u32 = 80;
pub const ER_CROSS_ENGINE_TRANSACTION: u32 = 81;
pub const ER_NO_SUCH_ROLE: u32 = 82;
pub const ER_ROLE_EXISTS: u32 = 83;
pub const ER_CREATE_ROLE: u32 = 84;
pub const ER_INDEX_EXISTS: u32 = 85;
pub const ER_SESSION_CLOSED: u32 = 86;
pub const ER_ROLE_LOOP: u32 = 87;
pub const ER_GRANT: u32 = 88;
pub const ER_PRIV_GRANTED: u32 = 89;
pub const ER_ROLE_GRANTED: u32 = 90;
pub const ER_PRIV_NOT_GRANTED: u32 = 91;
pub const ER_ROLE_NOT_GRANTED: u32 = 92;
pub const ER_MISSING_SNAPSHOT: u32 = 93;
pub const ER_CANT_UPDATE_PRIMARY_KEY: u32 = 94;
pub const ER_UPDATE_INTEGER_OVERFLOW: u32 = 95;
pub const ER_GUEST_USER_PASSWORD: u32 = 96;
pub const ER_TRANSACTION_CONFLICT: u32 = 97;
pub const ER_UNSUPPORTED_PRIV: u32 = 98;
pub const ER_LOAD_FUNCTION: u32 = 99;
pub const ER_FUNCTION_LANGUAGE: u32 = 100;
pub const ER_RTREE_RECT: u32 = 101;
pub const ER_PROC_C: u32 = 102;
pub const ER_UNKNOWN_RTREE_INDEX_DISTANCE_TYPE: u32 = 103;
pub const ER_PROTOCOL: u32 = 104;
pub const ER_UPSERT_UNIQUE_SECONDARY_KEY: u32 = 105;
pub const ER_WRONG_INDEX_RECORD: u32 = 106;
pub const ER_WRONG_INDEX_PARTS: u32 = 107;
pub const ER_WRONG_INDEX_OPTIONS: u32 = 108;
pub const ER_WRONG_SCHEMA_VERSION: u32 = 109;
pub const ER_MEMTX_MAX_TUPLE_SIZE: u32 = 110;
pub const ER_WRONG_SPACE_OPTIONS: u32 = 111;
pub const ER_UNSUPPORTED_INDEX_FEATURE: u32 = 112;
pub const ER_VIEW_IS_RO: u32 = 113;
pub const ER_NO_TRANSACTION: u32 = 114;
pub const ER_SYSTEM: u32 = 115;
pub const ER_LOADING: u32 = 116;
pub const ER_CONNECTION_TO_SELF: u32 = 117;
pub const ER_KEY_PART_IS_TOO_LONG: u32 = 118;
pub const ER_COMPRESSION: u32 = 119;
pub const ER_CHECKPOINT_IN_PROGRESS: u32 = 120;
pub const ER_SUB_STMT_MAX: u32 = 121;
pub const ER_COMMIT_IN_SUB_STMT: u32 = 122;
pub const ER_ROLLBACK_IN_SUB_STMT: u32 = 123;
pub const ER_DECOMPRESSION: u32 = 124;
pub const ER_INVALID_XLOG_TYPE: u32 = 125;
pub const ER_ALREADY_RUNNING: u32 = 126;
pub const ER_INDEX_FIELD_COUNT_LIMIT: u32 = 127;
pub const ER_LOCAL_INSTANCE_ID_IS_READ_ONLY: u32 = 128;
pub const ER_BACKUP_IN_PROGRESS: u32 = 129;
pub const ER_READ_VIEW_ABORTED: u32 = 130;
pub const ER_INVALID_INDEX_FILE: u32 = 131;
pub const ER_INVALID_RUN_FILE: u32 = 132;
pub const ER_INVALID_VYLOG_FILE: u32 = 133;
pub const ER_CHECKPOINT_ROLLBACK: u32 = 134;
pub const ER_VY_QUOTA_TIMEOUT: u32 = 135;
pub const ER_PARTIAL_KEY: u32 = 136;
pub const ER_TRUNCATE_SYSTEM_SPACE: u32 = 137;
pub const ER_LOAD_MODULE: u32 = 138;
pub const ER_VINYL_MAX_TUPLE_SIZE: u32 = 139;
pub const ER_WRONG_DD_VERSION: u32 = 140;
pub const ER_WRONG_SPACE_FORMAT: u32 = 141;
pub const ER_CREATE_SEQUENCE: u32 = 142;
pub const ER_ALTER_SEQUENCE: u32 = 143;
pub const ER_DROP_SEQUENCE: u32 = 144;
pub const ER_NO_SUCH_SEQUENCE: u32 = 145;
pub const ER_SEQUENCE_EXISTS: u32 = 146;
pub const ER_SEQUENCE_OVERFLOW: u32 = 147;
pub const ER_NO_SUCH_INDEX_NAME: u32 = 148;
pub const ER_SPACE_FIELD_IS_DUPLICATE: u32 = 149;
pub const ER_CANT_CREATE_COLLATION: u32 = 150;
pub const ER_WRONG_COLLATION_OPTIONS: u32 = 151;
pub const ER_NULLABLE_PRIMARY: u32 = 152;
pub const ER_NO_SUCH_FIELD_NAME_IN_SPACE: u32 = 153;
pub const ER_TRANSACTION_YIELD: u32 = 154;
pub const ER_NO_SUCH_GROUP: u32 = 155;
pub const ER_SQL_BIND_VALUE: u32 = 156;
pub const ER_SQL_BIND_TYPE: u32 = 157;
pub const ER_SQL_BIND_PARAMETER_MAX: u32 = 158;
pub const ER_SQL_EXECUTE: u32 = 159;
pub const ER_UPDATE_DECIMAL_OVERFLOW: u32 = 160;
pub const ER_SQL_BIND_NOT_FOUND: u32 = 161;
pub const ER_ACTION_MISMATCH: u32 = 162;
pub const ER_VIEW_MISSING_SQL: u32 = 163;
pub const ER_FOREIGN_KEY_CONSTRAINT: u32 = 164;
pub const ER_NO_SUCH_MODULE: u32 = 165;
pub const ER_NO_SUCH_COLLATION: u32 = 166;
pub const ER_CREATE_FK_CONSTRAINT: u32 = 167;
pub const ER_DROP_FK_CONSTRAINT: u32 = 168;
pub const ER_NO_SUCH_CONSTRAINT: u32 = 169;
pub const ER_CONSTRAINT_EXISTS: u32 = 170;
pub const ER_SQL_TYPE_MISMATCH: u32 = 171;
pub const ER_ROWID_OVERFLOW: u32 = 172;
pub const ER_DROP_COLLATION: u32 = 173;
pub const ER_ILLEGAL_COLLATION_MIX: u32 = 174;
pub const ER_SQL_NO_SUCH_PRAGMA: u32 = 175;
pub const ER_SQL_CANT_RESOLVE_FIELD: u32 = 176;
pub const ER_INDEX_EXISTS_IN_SPACE: u32 = 177;
pub const ER_INCONSISTENT_TYPES: u32 = 178;
pub const ER_SQL_SYNTAX_WITH_POS: u32 = 179;
pub const ER_SQL_STACK_OVERFLOW: u32 = 180;
pub const ER_SQL_SELECT_WILDCARD: u32 = 181;
pub const ER_SQL_STATEMENT_EMPTY: u32 = 182;
pub const ER_SQL_KEYWORD_IS_RESERVED: u32 = 183;
pub const ER_SQL_SYNTAX_NEAR_TOKEN: u32 = 184;
pub const ER_SQL_UNKNOWN_TOKEN: u32 = 185;
pub const ER_SQL_PARSER_GENERIC: u32 = 186;
pub const ER_SQL_ANALYZE_ARGUMENT: u32 = 187;
pub const ER_SQL_COLUMN_COUNT_MAX: u32 = 188;
pub const ER_HEX_LITERAL_MAX: u32 = 189;
pub const ER_INT_LITERAL_MAX: u32 = 190;
pub const ER_SQL_PARSER_LIMIT: u32 = 191;
pub const ER_INDEX_DEF_UNSUPPORTED: u32 = 192;
pub const ER_CK_DEF_UNSUPPORTED: u32 = 193;
pub const ER_MULTIKEY_INDEX_MISMATCH: u32 = 194;
pub const ER_CREATE_CK_CONSTRAINT: u32 = 195;
pub const ER_CK_CONSTRAINT_FAILED: u32 = 196;
pub const ER_SQL_COLUMN_COUNT: u32 = 197;
pub const ER_FUNC_INDEX_FUNC: u32 = 198;
pub const ER_FUNC_INDEX_FORMAT: u32 = 199;
pub const ER_FUNC_INDEX_PARTS: u32 = 200;
pub const ER_NO_SUCH_FIELD_NAME: u32 = 201;
pub const ER_FUNC_WRONG_ARG_COUNT: u32 = 202;
pub const ER_BOOTSTRAP_READONLY: u32 = 203;
pub const ER_SQL_FUNC_WRONG_RET_COUNT: u32 = 204;
pub const ER_FUNC_INVALID_RETURN_TYPE: u32 = 205;
pub const ER_SQL_PARSER_GENERIC_WITH_POS: u32 = 206;
pub const ER_REPLICA_NOT_ANON: u32 = 207;
pub const ER_CANNOT_REGISTER: u32 = 208;
pub const ER_SESSION_SETTING_INVALID_VALUE: u32 = 209;
pub const ER_SQL_PREPARE: u32 = 210;
pub const ER_WRONG_QUERY_ID: u32 = 211;
pub const ER_SEQUENCE_NOT_STARTED: u32 = 212;
pub const ER_NO_SUCH_SESSION_SETTING: u32 = 213;
pub const ER_UNCOMMITTED_FOREIGN_SYNC_TXNS: u32 = 214;
pub const ER_SYNC_MASTER_MISMATCH: u32 = 215;
pub const ER_SYNC_QUORUM_TIMEOUT: u32 = 216;
pub const ER_SYNC_ROLLBACK: u32 = 217;
pub const ER_TUPLE_METADATA_IS_TOO_BIG: u32 = 218;
pub const ER_XLOG_GAP: u32 = 219;
pub const ER_TOO_EARLY_SUBSCRIBE: u32 = 220;
pub const ER_UNUSED: u32 = 221;
pub const ER_QUORUM_WAIT: u32 = 222;
pub const ER_INTERFERING_PROMOTE: u32 = 223;
pub const ER_RAFT_DISABLED: u32 = 224;

/// Every code, ordered by number (the index is the code).
pub static ERRCODES: &[ErrCode] = &[
    ErrCode { name: "UNKNOWN", code: 0, template: "Unknown error" },
    ErrCode { name: "ILLEGAL_PARAMS", code: 1, template: "Illegal parameters, %s" },
    ErrCode { name: "MEMORY_ISSUE", code: 2, template: "Failed to allocate %u bytes in %s for %s" },
    ErrCode { name: "TUPLE_FOUND", code: 3, template: "Duplicate key exists in unique index '%s' in space '%s'" },
    ErrCode { name: "TUPLE_NOT_FOUND", code: 4, template: "Tuple doesn't exist in index '%s' in space '%s'" },
    ErrCode { name: "UNSUPPORTED", code: 5, template: "%s does not support %s" },
    ErrCode { name: "NONMASTER", code: 6, template: "Can't modify data on a replication slave. My master is: %s" },
    ErrCode { name: "READONLY", code: 7, template: "Can't modify data because this instance is in read-only mode." },
    ErrCode { name: "INJECTION", code: 8, template: "Error injection '%s'" },
    ErrCode { name: "CREATE_SPACE", code: 9, template: "Failed to create space '%s': %s" },
    ErrCode { name: "SPACE_EXISTS", code: 10, template: "Space '%s' already exists" },
    ErrCode { name: "DROP_SPACE", code: 11, template: "Can't drop space '%s': %s" },
    ErrCode { name: "ALTER_SPACE", code: 12, template: "Can't modify space '%s': %s" },
    ErrCode { name: "INDEX_TYPE", code: 13, template: "Unsupported index type supplied for index '%s' in space '%s'" },
    ErrCode { name: "MODIFY_INDEX", code: 14, template: "Can't create or modify index '%s' in space '%s': %s" },
    ErrCode { name: "LAST_DROP", code: 15, template: "Can't drop the primary key in a system space, space '%s'" },
    ErrCode { name: "TUPLE_FORMAT_LIMIT", code: 16, template: "Tuple format limit reached: %u" },
    ErrCode { name: "DROP_PRIMARY_KEY", code: 17, template: "Can't drop primary key in space '%s' while secondary keys exist" },
    ErrCode { name: "KEY_PART_TYPE", code: 18, template: "Supplied key type of part %u does not match index part type: expected %s" },
    ErrCode { name: "EXACT_MATCH", code: 19, template: "Invalid key part count in an exact match (expected %u, got %u)" },
    ErrCode { name: "INVALID_MSGPACK", code: 20, template: "Invalid MsgPack - %s" },
    ErrCode { name: "PROC_RET", code: 21, template: "msgpack.encode: can not encode Lua type '%s'" },
    ErrCode { name: "TUPLE_NOT_ARRAY", code: 22, template: "Tuple/Key must be MsgPack array" },
    ErrCode { name: "FIELD_TYPE", code: 23, template: "Tuple field %s type does not match one required by operation: expected %s" },
    ErrCode { name: "INDEX_PART_TYPE_MISMATCH", code: 24, template: "Field %s has type '%s' in one index, but type '%s' in another" },
    ErrCode { name: "UPDATE_SPLICE", code: 25, template: "SPLICE error on field %s: %s" },
    ErrCode { name: "UPDATE_ARG_TYPE", code: 26, template: "Argument type in operation '%c' on field %s does not match field type: expected %s" },
    ErrCode { name: "FORMAT_MISMATCH_INDEX_PART", code: 27, template: "Field %s has type '%s' in space format, but type '%s' in index definition" },
    ErrCode { name: "UNKNOWN_UPDATE_OP", code: 28, template: "Unknown UPDATE operation #%d: %s" },
    ErrCode { name: "UPDATE_FIELD", code: 29, template: "Field %s UPDATE error: %s" },
    ErrCode { name: "FUNCTION_TX_ACTIVE", code: 30, template: "Transaction is active at return from function" },
    ErrCode { name: "KEY_PART_COUNT", code: 31, template: "Invalid key part count (expected [0..%u], got %u)" },
    ErrCode { name: "PROC_LUA", code: 32, template: "%s" },
    ErrCode { name: "NO_SUCH_PROC", code: 33, template: "Procedure '%.*s' is not defined" },
    ErrCode { name: "NO_SUCH_TRIGGER", code: 34, template: "Trigger '%s' doesn't exist" },
    ErrCode { name: "NO_SUCH_INDEX_ID", code: 35, template: "No index #%u is defined in space '%s'" },
    ErrCode { name: "NO_SUCH_SPACE", code: 36, template: "Space '%s' does not exist" },
    ErrCode { name: "NO_SUCH_FIELD_NO", code: 37, template: "Field %d was not found in the tuple" },
    ErrCode { name: "EXACT_FIELD_COUNT", code: 38, template: "Tuple field count %u does not match space field count %u" },
    ErrCode { name: "FIELD_MISSING", code: 39, template: "Tuple field %s required by space format is missing" },
    ErrCode { name: "WAL_IO", code: 40, template: "Failed to write to disk" },
    ErrCode { name: "MORE_THAN_ONE_TUPLE", code: 41, template: "Get() doesn't support partial keys and non-unique indexes" },
    ErrCode { name: "ACCESS_DENIED", code: 42, template: "%s access to %s '%s' is denied for user '%s'" },
    ErrCode { name: "CREATE_USER", code: 43, template: "Failed to create user '%s': %s" },
    ErrCode { name: "DROP_USER", code: 44, template: "Failed to drop user or role '%s': %s" },
    ErrCode { name: "NO_SUCH_USER", code: 45, template: "User '%s' is not found" },
    ErrCode { name: "USER_EXISTS", code: 46, template: "User '%s' already exists" },
    ErrCode { name: "PASSWORD_MISMATCH", code: 47, template: "Incorrect password supplied for user '%s'" },
    ErrCode { name: "UNKNOWN_REQUEST_TYPE", code: 48, template: "Unknown request type %u" },
    ErrCode { name: "UNKNOWN_SCHEMA_OBJECT", code: 49, template: "Unknown object type '%s'" },
    ErrCode { name: "CREATE_FUNCTION", code: 50, template: "Failed to create function '%s': %s" },
    ErrCode { name: "NO_SUCH_FUNCTION", code: 51, template: "Function '%s' does not exist" },
    ErrCode { name: "FUNCTION_EXISTS", code: 52, template: "Function '%s' already exists" },
    ErrCode { name: "BEFORE_REPLACE_RET", code: 53, template: "Invalid return value of space:before_replace trigger: expected tuple or nil, got %s" },
    ErrCode { name: "MULTISTATEMENT_TRANSACTION", code: 54, template: "Can not perform %s in a multi-statement transaction" },
    ErrCode { name: "TRIGGER_EXISTS", code: 55, template: "Trigger '%s' already exists" },
    ErrCode { name: "USER_MAX", code: 56, template: "A limit on the total number of users has been reached: %u" },
    ErrCode { name: "NO_SUCH_ENGINE", code: 57, template: "Space engine '%s' does not exist" },
    ErrCode { name: "RELOAD_CFG", code: 58, template: "Can't set option '%s' dynamically" },
    ErrCode { name: "CFG", code: 59, template: "Incorrect value for option '%s': %s" },
    ErrCode { name: "SAVEPOINT_EMPTY_TX", code: 60, template: "Can not set a savepoint in an empty transaction" },
    ErrCode { name: "NO_SUCH_SAVEPOINT", code: 61, template: "Can not rollback to savepoint: the savepoint does not exist" },
    ErrCode { name: "UNKNOWN_REPLICA", code: 62, template: "Replica %s is not registered with replica set %s" },
    ErrCode { name: "REPLICASET_UUID_MISMATCH", code: 63, template: "Replica set UUID mismatch: expected %s, got %s" },
    ErrCode { name: "INVALID_UUID", code: 64, template: "Invalid UUID: %s" },
    ErrCode { name: "REPLICASET_UUID_IS_RO", code: 65, template: "Can't reset replica set UUID: it is already assigned" },
    ErrCode { name: "INSTANCE_UUID_MISMATCH", code: 66, template: "Instance UUID mismatch: expected %s, got %s" },
    ErrCode { name: "REPLICA_ID_IS_RESERVED", code: 67, template: "Can't initialize replica id with a reserved value %u" },
    ErrCode { name: "INVALID_ORDER", code: 68, template: "Invalid LSN order for instance %u: previous LSN = %llu, new lsn = %llu" },
    ErrCode { name: "MISSING_REQUEST_FIELD", code: 69, template: "Missing mandatory field '%s' in request" },
    ErrCode { name: "IDENTIFIER", code: 70, template: "Invalid identifier '%s' (expected printable symbols only or it is too long)" },
    ErrCode { name: "DROP_FUNCTION", code: 71, template: "Can't drop function %u: %s" },
    ErrCode { name: "ITERATOR_TYPE", code: 72, template: "Unknown iterator type '%s'" },
    ErrCode { name: "REPLICA_MAX", code: 73, template: "Replica count limit reached: %u" },
    ErrCode { name: "INVALID_XLOG", code: 74, template: "Failed to read xlog: %lld" },
    ErrCode { name: "INVALID_XLOG_NAME", code: 75, template: "Invalid xlog name: expected %lld got %lld" },
    ErrCode { name: "INVALID_XLOG_ORDER", code: 76, template: "Invalid xlog order: %lld and %lld" },
    ErrCode { name: "NO_CONNECTION", code: 77, template: "Connection is not established" },
    ErrCode { name: "TIMEOUT", code: 78, template: "Timeout exceeded" },
    ErrCode { name: "ACTIVE_TRANSACTION", code: 79, template: "Operation is not permitted when there is an active transaction " },
    ErrCode { name: "CURSOR_NO_TRANSACTION", code: 80, template: "The transaction the cursor belongs to has ended" },
    ErrCode { name: "CROSS_ENGINE_TRANSACTION", code: 81, template: "A multi-statement transaction can not use multiple storage engines" },
    ErrCode { name: "NO_SUCH_ROLE", code: 82, template: "Role '%s' is not found" },
    ErrCode { name: "ROLE_EXISTS", code: 83, template: "Role '%s' already exists" },
    ErrCode { name: "CREATE_ROLE", code: 84, template: "Failed to create role '%s': %s" },
    ErrCode { name: "INDEX_EXISTS", code: 85, template: "Index '%s' already exists" },
    ErrCode { name: "SESSION_CLOSED", code: 86, template: "Session is closed" },
    ErrCode { name: "ROLE_LOOP", code: 87, template: "Granting role '%s' to role '%s' would create a loop" },
    ErrCode { name: "GRANT", code: 88, template: "Incorrect grant arguments: %s" },
    ErrCode { name: "PRIV_GRANTED", code: 89, template: "User '%s' already has %s access on %s%s" },
    ErrCode { name: "ROLE_GRANTED", code: 90, template: "User '%s' already has role '%s'" },
    ErrCode { name: "PRIV_NOT_GRANTED", code: 91, template: "User '%s' does not have %s access on %s '%s'" },
    ErrCode { name: "ROLE_NOT_GRANTED", code: 92, template: "User '%s' does not have role '%s'" },
    ErrCode { name: "MISSING_SNAPSHOT", code: 93, template: "Can't find snapshot" },
    ErrCode { name: "CANT_UPDATE_PRIMARY_KEY", code: 94, template: "Attempt to modify a tuple field which is part of index '%s' in space '%s'" },
    ErrCode { name: "UPDATE_INTEGER_OVERFLOW", code: 95, template: "Integer overflow when performing '%c' operation on field %s" },
    ErrCode { name: "GUEST_USER_PASSWORD", code: 96, template: "Setting password for guest user has no effect" },
    ErrCode { name: "TRANSACTION_CONFLICT", code: 97, template: "Transaction has been aborted by conflict" },
    ErrCode { name: "UNSUPPORTED_PRIV", code: 98, template: "Unsupported %s privilege '%s'" },
    ErrCode { name: "LOAD_FUNCTION", code: 99, template: "Failed to dynamically load function '%s': %s" },
    ErrCode { name: "FUNCTION_LANGUAGE", code: 100, template: "Unsupported language '%s' specified for function '%s'" },
    ErrCode { name: "RTREE_RECT", code: 101, template: "RTree: %s must be an array with %u (point) or %u (rectangle/box) numeric coordinates" },
    ErrCode { name: "PROC_C", code: 102, template: "%s" },
    ErrCode { name: "UNKNOWN_RTREE_INDEX_DISTANCE_TYPE", code: 103, template: "Unknown RTREE index distance type %s" },
    ErrCode { name: "PROTOCOL", code: 104, template: "%s" },
    ErrCode { name: "UPSERT_UNIQUE_SECONDARY_KEY", code: 105, template: "Space %s has a unique secondary index and does not support UPSERT" },
    ErrCode { name: "WRONG_INDEX_RECORD", code: 106, template: "Wrong record in _index space: got {%s}, expected {%s}" },
    ErrCode { name: "WRONG_INDEX_PARTS", code: 107, template: "Wrong index parts: %s; expected field1 id (number), field1 type (string), ..." },
    ErrCode { name: "WRONG_INDEX_OPTIONS", code: 108, template: "Wrong index options (field %u): %s" },
    ErrCode { name: "WRONG_SCHEMA_VERSION", code: 109, template: "Wrong schema version, current: %d, in request: %u" },
    ErrCode { name: "MEMTX_MAX_TUPLE_SIZE", code: 110, template: "Failed to allocate %u bytes for tuple: tuple is too large. Check 'memtx_max_tuple_size' configuration option." },
    ErrCode { name: "WRONG_SPACE_OPTIONS", code: 111, template: "Wrong space options (field %u): %s" },
    ErrCode { name: "UNSUPPORTED_INDEX_FEATURE", code: 112, template: "Index '%s' (%s) of space '%s' (%s) does not support %s" },
    ErrCode { name: "VIEW_IS_RO", code: 113, template: "View '%s' is read-only" },
    ErrCode { name: "NO_TRANSACTION", code: 114, template: "No active transaction" },
    ErrCode { name: "SYSTEM", code: 115, template: "%s" },
    ErrCode { name: "LOADING", code: 116, template: "Instance bootstrap hasn't finished yet" },
    ErrCode { name: "CONNECTION_TO_SELF", code: 117, template: "Connection to self" },
    ErrCode { name: "KEY_PART_IS_TOO_LONG", code: 118, template: "Key part is too long: %u of %u bytes" },
    ErrCode { name: "COMPRESSION", code: 119, template: "Compression error: %s" },
    ErrCode { name: "CHECKPOINT_IN_PROGRESS", code: 120, template: "Snapshot is already in progress" },
    ErrCode { name: "SUB_STMT_MAX", code: 121, template: "Can not execute a nested statement: nesting limit reached" },
    ErrCode { name: "COMMIT_IN_SUB_STMT", code: 122, template: "Can not commit transaction in a nested statement" },
    ErrCode { name: "ROLLBACK_IN_SUB_STMT", code: 123, template: "Rollback called in a nested statement" },
    ErrCode { name: "DECOMPRESSION", code: 124, template: "Decompression error: %s" },
    ErrCode { name: "INVALID_XLOG_TYPE", code: 125, template: "Invalid xlog type: expected %s, got %s" },
    ErrCode { name: "ALREADY_RUNNING", code: 126, template: "Failed to lock WAL directory %s and hot_standby mode is off" },
    ErrCode { name: "INDEX_FIELD_COUNT_LIMIT", code: 127, template: "Indexed field count limit reached: %d indexed fields" },
    ErrCode { name: "LOCAL_INSTANCE_ID_IS_READ_ONLY", code: 128, template: "The local instance id %u is read-only" },
    ErrCode { name: "BACKUP_IN_PROGRESS", code: 129, template: "Backup is already in progress" },
    ErrCode { name: "READ_VIEW_ABORTED", code: 130, template: "The read view is aborted" },
    ErrCode { name: "INVALID_INDEX_FILE", code: 131, template: "Invalid INDEX file %s: %s" },
    ErrCode { name: "INVALID_RUN_FILE", code: 132, template: "Invalid RUN file: %s" },
    ErrCode { name: "INVALID_VYLOG_FILE", code: 133, template: "Invalid VYLOG file: %s" },
    ErrCode { name: "CHECKPOINT_ROLLBACK", code: 134, template: "Can't start a checkpoint while in cascading rollback" },
    ErrCode { name: "VY_QUOTA_TIMEOUT", code: 135, template: "Timed out waiting for Vinyl memory quota" },
    ErrCode { name: "PARTIAL_KEY", code: 136, template: "%s index  does not support selects via a partial key (expected %u parts, got %u). Please Consider changing index type to TREE." },
    ErrCode { name: "TRUNCATE_SYSTEM_SPACE", code: 137, template: "Can't truncate a system space, space '%s'" },
    ErrCode { name: "LOAD_MODULE", code: 138, template: "Failed to dynamically load module '%.*s': %s" },
    ErrCode { name: "VINYL_MAX_TUPLE_SIZE", code: 139, template: "Failed to allocate %u bytes for tuple: tuple is too large. Check 'vinyl_max_tuple_size' configuration option." },
    ErrCode { name: "WRONG_DD_VERSION", code: 140, template: "Wrong _schema version: expected 'major.minor[.patch]'" },
    ErrCode { name: "WRONG_SPACE_FORMAT", code: 141, template: "Wrong space format (field %u): %s" },
    ErrCode { name: "CREATE_SEQUENCE", code: 142, template: "Failed to create sequence '%s': %s" },
    ErrCode { name: "ALTER_SEQUENCE", code: 143, template: "Can't modify sequence '%s': %s" },
    ErrCode { name: "DROP_SEQUENCE", code: 144, template: "Can't drop sequence '%s': %s" },
    ErrCode { name: "NO_SUCH_SEQUENCE", code: 145, template: "Sequence '%s' does not exist" },
    ErrCode { name: "SEQUENCE_EXISTS", code: 146, template: "Sequence '%s' already exists" },
    ErrCode { name: "SEQUENCE_OVERFLOW", code: 147, template: "Sequence '%s' has overflowed" },
    ErrCode { name: "NO_SUCH_INDEX_NAME", code: 148, template: "No index '%s' is defined in space '%s'" },
    ErrCode { name: "SPACE_FIELD_IS_DUPLICATE", code: 149, template: "Space field '%s' is duplicate" },
    ErrCode { name: "CANT_CREATE_COLLATION", code: 150, template: "Failed to initialize collation: %s." },
    ErrCode { name: "WRONG_COLLATION_OPTIONS", code: 151, template: "Wrong collation options (field %u): %s" },
    ErrCode { name: "NULLABLE_PRIMARY", code: 152, template: "Primary index of space '%s' can not contain nullable parts" },
    ErrCode { name: "NO_SUCH_FIELD_NAME_IN_SPACE", code: 153, template: "Field '%s' was not found in space '%s' format" },
    ErrCode { name: "TRANSACTION_YIELD", code: 154, template: "Transaction has been aborted by a fiber yield" },
    ErrCode { name: "NO_SUCH_GROUP", code: 155, template: "Replication group '%s' does not exist" },
    ErrCode { name: "SQL_BIND_VALUE", code: 156, template: "Bind value for parameter %s is out of range for type %s" },
    ErrCode { name: "SQL_BIND_TYPE", code: 157, template: "Bind value type %s for parameter %s is not supported" },
    ErrCode { name: "SQL_BIND_PARAMETER_MAX", code: 158, template: "SQL bind parameter limit reached: %d" },
    ErrCode { name: "SQL_EXECUTE", code: 159, template: "Failed to execute SQL statement: %s" },
    ErrCode { name: "UPDATE_DECIMAL_OVERFLOW", code: 160, template: "Decimal overflow when performing operation '%c' on field %s" },
    ErrCode { name: "SQL_BIND_NOT_FOUND", code: 161, template: "Parameter %s was not found in the statement" },
    ErrCode { name: "ACTION_MISMATCH", code: 162, template: "Field %s contains %s on conflict action, but %s in index parts" },
    ErrCode { name: "VIEW_MISSING_SQL", code: 163, template: "Space declared as a view must have SQL statement" },
    ErrCode { name: "FOREIGN_KEY_CONSTRAINT", code: 164, template: "Can not commit transaction: deferred foreign keys violations are not resolved" },
    ErrCode { name: "NO_SUCH_MODULE", code: 165, template: "Module '%s' does not exist" },
    ErrCode { name: "NO_SUCH_COLLATION", code: 166, template: "Collation '%s' does not exist" },
    ErrCode { name: "CREATE_FK_CONSTRAINT", code: 167, template: "Failed to create foreign key constraint '%s': %s" },
    ErrCode { name: "DROP_FK_CONSTRAINT", code: 168, template: "Failed to drop foreign key constraint '%s': %s" },
    ErrCode { name: "NO_SUCH_CONSTRAINT", code: 169, template: "Constraint '%s' does not exist in space '%s'" },
    ErrCode { name: "CONSTRAINT_EXISTS", code: 170, template: "%s constraint '%s' already exists in space '%s'" },
    ErrCode { name: "SQL_TYPE_MISMATCH", code: 171, template: "Type mismatch: can not convert %s to %s" },
    ErrCode { name: "ROWID_OVERFLOW", code: 172, template: "Rowid is overflowed: too many entries in ephemeral space" },
    ErrCode { name: "DROP_COLLATION", code: 173, template: "Can't drop collation %s : %s" },
    ErrCode { name: "ILLEGAL_COLLATION_MIX", code: 174, template: "Illegal mix of collations" },
    ErrCode { name: "SQL_NO_SUCH_PRAGMA", code: 175, template: "Pragma '%s' does not exist" },
    ErrCode { name: "SQL_CANT_RESOLVE_FIELD", code: 176, template: "Can’t resolve field '%s'" },
    ErrCode { name: "INDEX_EXISTS_IN_SPACE", code: 177, template: "Index '%s' already exists in space '%s'" },
    ErrCode { name: "INCONSISTENT_TYPES", code: 178, template: "Inconsistent types: expected %s got %s" },
    ErrCode { name: "SQL_SYNTAX_WITH_POS", code: 179, template: "Syntax error at line %d at or near position %d: %s" },
    ErrCode { name: "SQL_STACK_OVERFLOW", code: 180, template: "Failed to parse SQL statement: parser stack limit reached" },
    ErrCode { name: "SQL_SELECT_WILDCARD", code: 181, template: "Failed to expand '*' in SELECT statement without FROM clause" },
    ErrCode { name: "SQL_STATEMENT_EMPTY", code: 182, template: "Failed to execute an empty SQL statement" },
    ErrCode { name: "SQL_KEYWORD_IS_RESERVED", code: 183, template: "At line %d at or near position %d: keyword '%.*s' is reserved. Please use double quotes if '%.*s' is an identifier." },
    ErrCode { name: "SQL_SYNTAX_NEAR_TOKEN", code: 184, template: "Syntax error at line %d near '%.*s'" },
    ErrCode { name: "SQL_UNKNOWN_TOKEN", code: 185, template: "At line %d at or near position %d: unrecognized token '%.*s'" },
    ErrCode { name: "SQL_PARSER_GENERIC", code: 186, template: "%s" },
    ErrCode { name: "SQL_ANALYZE_ARGUMENT", code: 187, template: "ANALYZE statement argument %s is not a base table" },
    ErrCode { name: "SQL_COLUMN_COUNT_MAX", code: 188, template: "Failed to create space '%s': space column count %d exceeds the limit (%d)" },
    ErrCode { name: "HEX_LITERAL_MAX", code: 189, template: "Hex literal %s%s length %d exceeds the supported limit (%d)" },
    ErrCode { name: "INT_LITERAL_MAX", code: 190, template: "Integer literal %s%s exceeds the supported range [-9223372036854775808, 18446744073709551615]" },
    ErrCode { name: "SQL_PARSER_LIMIT", code: 191, template: "%s %d exceeds the limit (%d)" },
    ErrCode { name: "INDEX_DEF_UNSUPPORTED", code: 192, template: "%s are prohibited in an index definition" },
    ErrCode { name: "CK_DEF_UNSUPPORTED", code: 193, template: "%s are prohibited in a ck constraint definition" },
    ErrCode { name: "MULTIKEY_INDEX_MISMATCH", code: 194, template: "Field %s is used as multikey in one index and as single key in another" },
    ErrCode { name: "CREATE_CK_CONSTRAINT", code: 195, template: "Failed to create check constraint '%s': %s" },
    ErrCode { name: "CK_CONSTRAINT_FAILED", code: 196, template: "Check constraint failed '%s': %s" },
    ErrCode { name: "SQL_COLUMN_COUNT", code: 197, template: "Unequal number of entries in row expression: left side has %u, but right side - %u" },
    ErrCode { name: "FUNC_INDEX_FUNC", code: 198, template: "Failed to build a key for functional index '%s' of space '%s': %s" },
    ErrCode { name: "FUNC_INDEX_FORMAT", code: 199, template: "Key format doesn't match one defined in functional index '%s' of space '%s': %s" },
    ErrCode { name: "FUNC_INDEX_PARTS", code: 200, template: "Wrong functional index definition: %s" },
    ErrCode { name: "NO_SUCH_FIELD_NAME", code: 201, template: "Field '%s' was not found in the tuple" },
    ErrCode { name: "FUNC_WRONG_ARG_COUNT", code: 202, template: "Wrong number of arguments is passed to %s(): expected %s, got %d" },
    ErrCode { name: "BOOTSTRAP_READONLY", code: 203, template: "Trying to bootstrap a local read-only instance as master" },
    ErrCode { name: "SQL_FUNC_WRONG_RET_COUNT", code: 204, template: "SQL expects exactly one argument returned from %s, got %d" },
    ErrCode { name: "FUNC_INVALID_RETURN_TYPE", code: 205, template: "Function '%s' returned value of invalid type: expected %s got %s" },
    ErrCode { name: "SQL_PARSER_GENERIC_WITH_POS", code: 206, template: "At line %d at or near position %d: %s" },
    ErrCode { name: "REPLICA_NOT_ANON", code: 207, template: "Replica '%s' is not anonymous and cannot register." },
    ErrCode { name: "CANNOT_REGISTER", code: 208, template: "Couldn't find an instance to register this replica on." },
    ErrCode { name: "SESSION_SETTING_INVALID_VALUE", code: 209, template: "Session setting %s expected a value of type %s" },
    ErrCode { name: "SQL_PREPARE", code: 210, template: "Failed to prepare SQL statement: %s" },
    ErrCode { name: "WRONG_QUERY_ID", code: 211, template: "Prepared statement with id %u does not exist" },
    ErrCode { name: "SEQUENCE_NOT_STARTED", code: 212, template: "Sequence '%s' is not started" },
    ErrCode { name: "NO_SUCH_SESSION_SETTING", code: 213, template: "Session setting %s doesn't exist" },
    ErrCode { name: "UNCOMMITTED_FOREIGN_SYNC_TXNS", code: 214, template: "Found uncommitted sync transactions from other instance with id %u" },
    ErrCode { name: "SYNC_MASTER_MISMATCH", code: 215, template: "CONFIRM message arrived for an unknown master id %d, expected %d" },
    ErrCode { name: "SYNC_QUORUM_TIMEOUT", code: 216, template: "Quorum collection for a synchronous transaction is timed out" },
    ErrCode { name: "SYNC_ROLLBACK", code: 217, template: "A rollback for a synchronous transaction is received" },
    ErrCode { name: "TUPLE_METADATA_IS_TOO_BIG", code: 218, template: "Can't create tuple: metadata size %u is too big" },
    ErrCode { name: "XLOG_GAP", code: 219, template: "%s" },
    ErrCode { name: "TOO_EARLY_SUBSCRIBE", code: 220, template: "Can't subscribe non-anonymous replica %s until join is done" },
    ErrCode { name: "UNUSED", code: 221, template: "Unused." },
    ErrCode { name: "QUORUM_WAIT", code: 222, template: "Couldn't wait for quorum %d: %s" },
    ErrCode { name: "INTERFERING_PROMOTE", code: 223, template: "Instance with replica id %u was promoted first" },
    ErrCode { name: "RAFT_DISABLED", code: 224, template: "Elections were turned off while running box.ctl.promote()" },
];
