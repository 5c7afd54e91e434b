package config

// validateLedger checks [backend] identity_ledger and ledger_user.
func (c *Config) validateLedger() []error {
	var errs []error
	if c.Backend.IdentityLedger && c.Backend.LedgerUser == "" {
		errs = append(errs, c.keyError("backend.identity_ledger", "needs backend.ledger_user, the role that writes the ledger"))
	}
	return errs
}
