//! The actions of the audit log, one spelling each. The README lists them.

/// What an audit entry records. `AuditEntry::action` holds [`AuditAction::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    // Sign-in, by the person themselves.
    SignIn,
    SignInFailed,
    SignOut,
    MfaEnrolled,
    /// A new factor set up after a recovery code, in place of the lost one.
    MfaReplaced,
    RecoveryCodeUsed,
    RecoveryCodesRenewed,
    /// A person removed one of their passkeys.
    PasskeyRemoved,
    /// A passkey's signature counter went back: a copy of its key was used, and refused.
    PasskeyCloned,
    PasswordReset,
    /// A person ended one of their own devices on the account page.
    DeviceEnded,
    /// A person took a certificate for this device (PKCS#12) from the account page.
    Pkcs12Issued,
    DeviceApproved,
    DeviceDenied,
    DeviceEnrolled,
    DeviceRenewed,
    // Account administration, by an operator, an organisation admin or an API token.
    AccountCreated,
    AccountEdited,
    AccountDisabled,
    AccountEnabled,
    MfaReset,
    PasswordSet,
    /// An organisation admin lifted the block on signing in with an account's names.
    SignInUnblocked,
    AccountDeleted,
    AccountsImported,
    DeviceRevoked,
    AllDevicesRevoked,
    TokenCreated,
    TokenRevoked,
    AllowListSaved,
}

impl AuditAction {
    pub const ALL: [AuditAction; 30] = [
        AuditAction::SignIn,
        AuditAction::SignInFailed,
        AuditAction::SignOut,
        AuditAction::MfaEnrolled,
        AuditAction::MfaReplaced,
        AuditAction::RecoveryCodeUsed,
        AuditAction::RecoveryCodesRenewed,
        AuditAction::PasskeyRemoved,
        AuditAction::PasskeyCloned,
        AuditAction::PasswordReset,
        AuditAction::DeviceEnded,
        AuditAction::Pkcs12Issued,
        AuditAction::DeviceApproved,
        AuditAction::DeviceDenied,
        AuditAction::DeviceEnrolled,
        AuditAction::DeviceRenewed,
        AuditAction::AccountCreated,
        AuditAction::AccountEdited,
        AuditAction::AccountDisabled,
        AuditAction::AccountEnabled,
        AuditAction::MfaReset,
        AuditAction::PasswordSet,
        AuditAction::SignInUnblocked,
        AuditAction::AccountDeleted,
        AuditAction::AccountsImported,
        AuditAction::DeviceRevoked,
        AuditAction::AllDevicesRevoked,
        AuditAction::TokenCreated,
        AuditAction::TokenRevoked,
        AuditAction::AllowListSaved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::SignIn => "sign-in",
            AuditAction::SignInFailed => "sign-in-failed",
            AuditAction::SignOut => "sign-out",
            AuditAction::MfaEnrolled => "mfa-enrolled",
            AuditAction::MfaReplaced => "mfa-replaced",
            AuditAction::RecoveryCodeUsed => "recovery-code-used",
            AuditAction::RecoveryCodesRenewed => "recovery-codes-renewed",
            AuditAction::PasskeyRemoved => "passkey-removed",
            AuditAction::PasskeyCloned => "passkey-cloned",
            AuditAction::PasswordReset => "password-reset",
            AuditAction::DeviceEnded => "device-revoked",
            AuditAction::Pkcs12Issued => "pkcs12-issued",
            AuditAction::DeviceApproved => "device-approved",
            AuditAction::DeviceDenied => "device-denied",
            AuditAction::DeviceEnrolled => "device-enrolled",
            AuditAction::DeviceRenewed => "device-renewed",
            AuditAction::AccountCreated => "admin.user.add",
            AuditAction::AccountEdited => "admin.user.edit",
            AuditAction::AccountDisabled => "admin.user.disable",
            AuditAction::AccountEnabled => "admin.user.enable",
            AuditAction::MfaReset => "admin.user.reset_mfa",
            AuditAction::PasswordSet => "admin.user.set_password",
            AuditAction::SignInUnblocked => "admin.user.unblock",
            AuditAction::AccountDeleted => "admin.user.delete",
            AuditAction::AccountsImported => "admin.user.import",
            AuditAction::DeviceRevoked => "admin.device.revoke",
            AuditAction::AllDevicesRevoked => "admin.device.revoke_all",
            AuditAction::TokenCreated => "admin.token.create",
            AuditAction::TokenRevoked => "admin.token.revoke",
            AuditAction::AllowListSaved => crate::ALLOW_LIST_AUDIT_ACTION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's audit table is where operators look an action up: it names every one.
    #[test]
    fn the_readme_names_every_action() {
        let readme = include_str!("../../README.md");
        for action in AuditAction::ALL {
            let quoted = format!("`{}`", action.as_str());
            assert!(readme.contains(&quoted), "README lacks {quoted}");
        }
    }

    #[test]
    fn every_action_has_its_own_spelling() {
        let mut seen = std::collections::HashSet::new();
        for action in AuditAction::ALL {
            assert!(seen.insert(action.as_str()), "{action:?} spelled twice");
        }
    }
}
