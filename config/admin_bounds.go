package config

// The admin endpoint's login history and certificate inventory are kept
// in memory; these bound them. The upper bounds keep a typo (an extra
// zero or two) from costing hundreds of megabytes: an attempt with its
// text at the 1 KiB cap holds a little over 1 KiB (admin's
// TestMemoryAtCaps measures it), and the inventory's byte budget, 8 MiB
// per 10,000 certificates, is 80 MiB at 100,000. The defaults are
// admin's own (a test in cmd/pgcertgate holds them equal).
const (
	DefaultLoginHistorySize         = 1000
	MaxLoginHistorySize             = 100000
	DefaultCertificateInventorySize = 10000
	MaxCertificateInventorySize     = 100000
)

func (c *Config) validateAdminBounds() []error {
	var errs []error
	for _, k := range []struct {
		key    string
		v, max int
	}{
		{"admin.login_history_size", c.Admin.LoginHistorySize, MaxLoginHistorySize},
		{"admin.certificate_inventory_size", c.Admin.CertificateInventorySize, MaxCertificateInventorySize},
	} {
		if k.v < 1 || k.v > k.max {
			errs = append(errs, c.keyError(k.key, "%d is outside the valid range 1..%d", k.v, k.max))
		}
	}
	return errs
}
