// Package pgerr is the error pgcertgate itself raises to a client: PostgreSQL's
// severity, SQLSTATE and message for the same situation, plus the audit
// reason and the server-log detail that never reach the client.
package pgerr

import "fmt"

// SQLSTATE codes pgcertgate sends itself. Each matches what PostgreSQL sends
// in the same situation.
const (
	CodeProtocolViolation     = "08P01"
	CodeFeatureNotSupported   = "0A000"
	CodeInvalidAuthorization  = "28000"
	CodeInvalidParameterValue = "22023"
	CodeInsufficientPrivilege = "42501"
	CodeTooManyConnections    = "53300"
	CodeConfigFileError       = "F0000"
	CodeCannotConnectNow      = "57P03"
)

// SeverityFatal is the severity of every error that ends a connection
// attempt.
const SeverityFatal = "FATAL"

// Error is a PostgreSQL-style error that pgcertgate itself raises. The
// Message is exactly what the client sees; Reason is the stable audit-log
// code and never reaches the client; LogDetail is for the log only.
type Error struct {
	Severity string
	Code     string
	Message  string
	// Detail is sent to the client, where PostgreSQL sends an errdetail
	// (not an errdetail_log) for the same error.
	Detail string
	// Hint is sent to the client, as PostgreSQL does for some errors.
	Hint string
	// Reason is a stable machine-readable code for logs and metrics
	// (no_hba_match, hba_reject, no_client_cert, …).
	Reason string
	// LogDetail is what PostgreSQL would write to its server log and never
	// to the client (matched line, identity, map failure).
	LogDetail string
	// Protocol2 marks an error for a client that asked for protocol 1.x
	// or 2.x: PostgreSQL answers those in the old format.
	Protocol2 bool
}

func (e *Error) Error() string { return e.Severity + ": " + e.Message }

// Fatal builds a FATAL Error.
func Fatal(code, reason, format string, args ...any) *Error {
	return &Error{Severity: SeverityFatal, Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// BackendUnavailable is the client's error when the proxy cannot reach
// the backend, or cannot use its own connection to it (a role-membership
// lookup): PostgreSQL has nothing to say in that case, and the client
// learns nothing of the proxy's layout. err goes to the log only.
func BackendUnavailable(reason string, err error) *Error {
	e := Fatal(CodeCannotConnectNow, reason, "could not connect to the database server behind pgcertgate")
	e.LogDetail = err.Error()
	return e
}
