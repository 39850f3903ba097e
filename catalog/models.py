"""The dataset registry: tenants, their members, their datasets; the event outbox and
the audit log that every other app writes through."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"
name_validator = RegexValidator(
    NAME_PATTERN,
    "Use lower-case letters, digits, '-' and '_' (no spaces, '/' or '..'), "
    "starting and ending with a letter or digit, at most 64 characters.",
)


class Organization(models.Model):
    """A tenant. Every dataset belongs to one; members see its private datasets."""

    slug = models.SlugField(max_length=64, unique=True, validators=[name_validator])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    STEWARD = "steward", "Steward"
    VIEWER = "viewer", "Viewer"


STEWARD_ROLES = (Role.ADMIN, Role.STEWARD)


class Membership(models.Model):
    """A user's role in one organisation: admins and stewards publish, viewers read."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"],
                name="membership_unique_user_organization",
                violation_error_message="This user is already a member of the organisation.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Layer(models.TextChoices):
    BRONZE = "bronze", "Bronze"
    SILVER = "silver", "Silver"
    GOLD = "gold", "Gold"
    PLATINUM = "platinum", "Platinum"


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private (members of the organisation)"
    INTERNAL = "internal", "Internal (any signed-in user)"
    PUBLIC = "public", "Public (anyone)"


class UpdateFrequency(models.TextChoices):
    HOURLY = "hourly", "Hourly"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"
    AD_HOC = "ad_hoc", "Ad hoc"


class Compatibility(models.TextChoices):
    """How new versions of a dataset are checked against its current schema (the schema
    registry's compatibility mode); the versioning app applies it."""

    MAJOR = "major", "Major: breaking changes only with a major version"
    STRICT = "strict", "Strict: breaking changes refused"
    NONE = "none", "None: no checks"


class Dataset(models.Model):
    """A table an organisation publishes, addressed as `<layer>/<name>`.

    Its versions, and which of them is current, live in the versioning app.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="datasets"
    )
    layer = models.CharField(max_length=16, choices=Layer.choices)
    name = models.CharField(max_length=64, validators=[name_validator])
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    update_frequency = models.CharField(
        max_length=16, choices=UpdateFrequency.choices, default=UpdateFrequency.DAILY
    )
    freshness_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="A new version is expected at least this often; empty for no expectation.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_datasets",
    )
    compatibility = models.CharField(
        max_length=16,
        choices=Compatibility.choices,
        default=Compatibility.MAJOR,
        help_text="How a new version's schema is checked against the current one.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization__slug", "layer", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "layer", "name"],
                name="dataset_unique_name_per_organization_layer",
                violation_error_message="This organisation already has a dataset of that "
                "name in that layer.",
            ),
            models.CheckConstraint(
                condition=Q(layer__in=Layer.values),
                name="dataset_layer_valid",
                violation_error_message="Unknown layer.",
            ),
            models.CheckConstraint(
                condition=Q(visibility__in=Visibility.values),
                name="dataset_visibility_valid",
                violation_error_message="Unknown visibility.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug}:{self.path}"

    @property
    def path(self) -> str:
        return f"{self.layer}/{self.name}"


class DomainEvent(models.Model):
    """Something happened that other apps react to; written in the transaction that
    made it happen, so it exists if and only if that change was committed."""

    topic = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField(default=dict)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.topic} #{self.pk}"


class EventDelivery(models.Model):
    """One event for one handler: the outbox row that stays until that handler has
    taken the event. A worker claims it with a lease; an expired lease means the
    worker died, and the sweeper hands the delivery out again."""

    event = models.ForeignKey(DomainEvent, on_delete=models.CASCADE, related_name="deliveries")
    handler = models.CharField(max_length=200)
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["event", "handler"], name="eventdelivery_unique_event_handler"
            )
        ]
        indexes = [
            models.Index(
                fields=["id"],
                name="eventdelivery_pending",
                condition=Q(delivered_at__isnull=True, failed_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.handler}"


class AuditEntry(models.Model):
    """A steward action: who did what to which object, when and from where."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=20, blank=True, help_text="admin, api, command or worker")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'} {self.action} {self.object_repr}"


class TokenScope(models.TextChoices):
    READ = "read", "Read datasets, versions, manifests and rows"
    PUBLISH = "publish", "Publish new versions"
    ADMIN = "admin", "Everything its user may do, including datasets and tokens"


class TokenKind(models.TextChoices):
    PERSONAL = "personal", "Personal"
    DEVICE = "device", "Device (publishes to one dataset)"


class ApiToken(models.Model):
    """A bearer token for the REST API, acting for its user within its scopes.

    Only the SHA-256 of the secret is kept: the secret is shown once, when the token is
    made. A device token (an edge device's upload credential) is bound to one dataset,
    may only publish to it, and always expires.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=TokenKind.choices, default=TokenKind.PERSONAL)
    scopes = models.JSONField(default=list)
    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, null=True, blank=True, related_name="device_tokens"
    )
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind=TokenKind.PERSONAL) & Q(dataset__isnull=True))
                | (
                    Q(kind=TokenKind.DEVICE)
                    & Q(dataset__isnull=False)
                    & Q(expires_at__isnull=False)
                ),
                name="apitoken_device_has_dataset_and_expiry",
                violation_error_message="A device token names one dataset and expires; "
                "a personal token names none.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Invitation(models.Model):
    """A steward asked someone, by email, to join an organisation with a role.

    Only the SHA-256 of the link's secret is kept, as for API tokens: the link is sent
    once, by email. An invitation is pending until it is accepted, revoked (a new
    invitation to the same address replaces it) or past `expires_at`.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "email"],
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_pending_per_email",
                violation_error_message="This address already has a pending invitation to "
                "the organisation.",
            ),
            models.CheckConstraint(
                condition=Q(role__in=Role.values),
                name="invitation_role_valid",
                violation_error_message="Unknown role.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization.slug} ({self.role})"
