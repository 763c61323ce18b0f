"""Domain errors: each carries a sentence that can be shown to the person who caused it."""


class DomainError(Exception):
    """Base for every rule violation the workflows report.

    `message` is written for the end user; `field` names the form input at fault, so a
    modal can put the error next to it instead of in a generic banner.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message: str = message
        self.field: str | None = field

    def __str__(self) -> str:
        return self.message


class NotFound(DomainError):
    """The thing asked for does not exist (or the actor may not know it exists)."""


class PermissionDenied(DomainError):
    """The actor's role does not allow the action."""


class InvalidTransition(DomainError):
    """The requested state change is not part of the workflow."""


class ValidationError(DomainError):
    """Input was malformed or out of range."""


class OverpaymentError(DomainError):
    """A payment would take an invoice's balance below zero."""


class ConflictError(DomainError):
    """Someone else changed the same thing first, or the action was already done."""


class DuplicateReference(ConflictError):
    """The invoice already has a payment under this external reference (check number, portal
    transaction, Stripe payment): the same money arriving a second way."""
