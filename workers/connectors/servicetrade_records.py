"""The ServiceTrade records `ServiceTradeClient` returns, as the API documents them.

Each type lists the documented fields of one record (seed 002, the ServiceTrade API reference: a
resource's "Returned Elements", and "Embedded Object Reference" for the objects records embed).
They are ``total=False``: a record may carry more fields than documented, or fewer (a list row, an
embedded copy), and the client does not validate the JSON it decodes, it only names its shape.
"""

from __future__ import annotations

from typing import TypedDict

# `externalIds`: "a key/value object of external system ids, only returned if account has external
# systems" (seed 002, most resources' Returned Elements): system name -> that system's id.
ExternalIds = dict[str, str]


class Address(TypedDict, total=False):
    """Seed 002, Embedded Object Reference, "Address"."""

    street: str
    city: str
    state: str
    postalCode: str


class Ref(TypedDict, total=False):
    """The embedded form of Appointment, Asset, Brand, Invoice, Role, Tag (seed 002, Embedded Object
    Reference): ``id``, ``uri`` and ``name``."""

    id: int
    uri: str
    name: str


class CompanyRef(Ref, total=False):
    """Seed 002, Embedded Object Reference, "Company"; ``status`` is pending, active, on_hold or inactive."""

    status: str


class Avatar(TypedDict, total=False):
    """Seed 002, Embedded Object Reference, "User": ``avatar.small|medium|large`` (32, 64, 128 px)."""

    small: str
    medium: str
    large: str


class UserRef(Ref, total=False):
    """Seed 002, Embedded Object Reference, "User"."""

    status: str
    email: str
    avatar: Avatar
    isTech: bool
    isHelper: bool


class ContactRef(TypedDict, total=False):
    """Seed 002, Embedded Object Reference, "Contact"."""

    id: int
    uri: str
    firstName: str
    lastName: str
    type: str
    phone: str
    mobile: str
    alternatePhone: str
    email: str


class LocationRef(Ref, total=False):
    """Seed 002, Embedded Object Reference, "Location"; jobs and appointments add ``distance`` (miles,
    null when unknown) and ``generalManager``. [INCONS] ``legacyId`` is typed string here, but
    the samples return ``4567`` or null."""

    legacyId: str | int | None
    lat: float
    lon: float
    address: Address
    phoneNumber: str
    email: str
    primaryContact: ContactRef | None
    taxable: bool
    status: str
    distance: float | None
    generalManager: str


class JobRef(Ref, total=False):
    """Seed 002, Embedded Object Reference, "Job"; an appointment's job adds the fields after ``type``."""

    number: int
    type: str
    primaryContact: ContactRef | None
    description: str
    jobTypeWeight: int
    dueBy: int | None
    tags: list[Ref]
    estimatedPrice: float | None


class ServiceLine(TypedDict, total=False):
    """Seed 002, Embedded Object Reference, "Service Line"."""

    id: int
    name: str
    trade: str
    abbr: str
    icon: str


class ServiceRequestRef(TypedDict, total=False):
    """A job's or an appointment's service (seed 002, "Job" and "Appointment" Returned Elements).

    A job's carries ``serviceLine`` as a name with ``serviceLineId``; an appointment's as a Service
    Line object, with its ``completion`` (pending, not_done, done, invalid) on that appointment.
    """

    id: int
    uri: str
    name: str
    description: str
    status: str
    completion: str
    serviceLine: str | ServiceLine
    serviceLineId: int
    serviceLineIcon: str
    asset: Ref | None
    windowStart: int
    windowEnd: int
    estimatedPrice: float | None
    duration: int | None
    preferredTechs: list[UserRef]


class CurrentAppointment(Ref, total=False):
    """Seed 002, "Job" Returned Elements, ``currentAppointment``: the earliest scheduled one."""

    status: str
    techs: list[UserRef]
    windowStart: int
    windowEnd: int
    released: bool


class Note(TypedDict, total=False):
    """A job's ``notes`` item; the sample shows ``{"type": "jobComments", "text": ...}``."""

    type: str
    text: str


class SchedulingComment(TypedDict, total=False):
    """Seed 002, "Job" Returned Elements, ``schedulingComments``."""

    id: int
    job_id: int
    uri: str
    content: str


class ServiceTradeEntity(TypedDict, total=False):
    """What every ServiceTrade record is read for: its identity, name, status and times.

    Seed 002: resources return ``id`` and an absolute ``uri``; ``created``/``updated`` are Unix
    seconds ("Dates and Times"); most return ``externalIds``. [INCONS] The Invoice, Quote and
    Deficiency tables type ``id`` as a string; every sample returns an integer.
    """

    id: int
    uri: str
    name: str
    status: str
    externalIds: ExternalIds
    created: int
    updated: int


class Job(ServiceTradeEntity, total=False):
    """Seed 002, "Job" Returned Elements (``GET /job/{id}``); status is one of new, scheduled, canceled,
    bidding, completed, pending_invoice, sending_invoice, invoiced, closed."""

    type: str
    jobTypeWeight: int
    number: int
    refNumber: str
    customerPo: str | None
    visibility: list[str]
    description: str
    scheduledDate: int | None
    estimatedPrice: float | None
    latestClockIn: int | None
    ivrOpen: bool
    ivrActivity: str | None
    serviceLine: str
    deficienciesFound: bool
    otherTradeDeficienciesFound: bool
    redTagsFound: bool
    dueBy: int | None
    completedOn: int | None
    vendor: CompanyRef
    customer: CompanyRef
    location: LocationRef
    owner: UserRef | None
    sales: UserRef | None
    primaryContact: ContactRef | None
    notes: list[Note]
    serviceRequests: list[ServiceRequestRef]
    currentAppointment: CurrentAppointment | None
    schedulingComments: list[SchedulingComment]
    assignedOffice: LocationRef | None
    offices: list[LocationRef]
    tags: list[Ref]
    terms: Ref | None
    contract: Ref | None
    budgeted: bool


class Appointment(ServiceTradeEntity, total=False):
    """Seed 002, "Appointment" Returned Elements; status is one of scheduled, unscheduled,
    canceled_by_vendor, canceled_by_customer, completed, no_show."""

    windowStart: int | None
    windowEnd: int | None
    location: LocationRef
    vendor: CompanyRef
    dueBy: int | None
    serviceRequests: list[ServiceRequestRef]
    job: JobRef
    techs: list[UserRef]
    offices: list[LocationRef]
    released: bool


class Location(ServiceTradeEntity, LocationRef, total=False):
    """Seed 002, "Location" Returned Elements (on top of the embedded Location)."""

    refNumber: str
    storeNumber: str
    company: CompanyRef
    brand: Ref | None
    offices: list[LocationRef]
    geocodeQuality: int
    tags: list[Ref]
    remitToSource: str
    remitToAddress: list[object]


class Logo(TypedDict, total=False):
    """Seed 002, "Company" Returned Elements, ``logo``."""

    id: int
    uri: str
    contentUrl: str
    aspect: str


class Company(ServiceTradeEntity, total=False):
    """Seed 002, "Company" Returned Elements; status is pending, active, on_hold or inactive."""

    refNumber: str
    customer: bool
    vendor: bool
    partsVendor: bool
    primeContractor: bool
    shareId: int
    managingAccount: Ref | None
    address: Address
    phoneNumber: str
    serviceLinesProvided: list[ServiceLine]
    defaultBrand: Ref | None
    logo: Logo | None
    tags: list[Ref]


class Contact(ServiceTradeEntity, ContactRef, total=False):
    """Seed 002, "Contact" Returned Elements; status is public, private (the default) or inactive."""

    companies: list[CompanyRef]
    locations: list[LocationRef]
    company: CompanyRef  # DEPRECATED in the doc
    location: LocationRef  # DEPRECATED in the doc


class Invoice(ServiceTradeEntity, total=False):
    """Seed 002, "Invoice" Returned Elements; type is invoice or vendorbill, status one of ok,
    internal_review, pending_accounting, processed, paid, sent, failed, void."""

    type: str
    invoiceNumber: str
    refNumber: str
    taxAmount: float
    subtotal: float
    totalPrice: float
    totalPaidAmount: float
    location: LocationRef
    job: JobRef
    customer: CompanyRef
    vendor: CompanyRef
    assignedUser: UserRef | None
    customerPo: str | None
    notes: str
    partial: bool
    paid: bool
    sent: bool
    tags: list[Ref]
    transactionDate: int
    assignedOffice: LocationRef | None
    dueDate: int | None
    visibility: list[str]


class Quote(ServiceTradeEntity, total=False):
    """Seed 002, "Quote" Returned Elements. The status enum is not documented. [INCONS] The prices are
    typed string."""

    refNumber: str
    notes: str
    customer: CompanyRef
    vendor: CompanyRef
    location: LocationRef
    deficiencySeverity: str | None
    respondBy: int | None
    expiresOn: int | None
    subtotal: str
    taxAmount: str
    totalPrice: str
    assignedTo: UserRef | None
    owner: UserRef | None
    sales: UserRef | None
    serviceLines: list[ServiceLine]
    jobs: list[JobRef]
    visibility: list[str]
    tags: list[Ref]
    customerPo: str | None
    description: str
    jobType: str
    serviceRequests: list[ServiceRequestRef]
    assignedOffice: LocationRef | None


class Deficiency(ServiceTradeEntity, total=False):
    """Seed 002, "Deficiency" Returned Elements; severity inoperable, deficient or suggested, status
    new, invalid, verified or fixed, resolution new, invalid, fixed, out_for_quote, notified, rejected."""

    refNumber: str
    reportedOn: int
    severity: str
    title: str
    lastReportedStatus: str
    resolution: str
    reportSource: str
    description: str
    proposedFix: str | None
    owner: UserRef | None
    sales: UserRef | None
    reporter: UserRef | None
    asset: Ref
    location: LocationRef
    serviceLine: ServiceLine
    job: JobRef | None
    visibility: list[str]


class Asset(ServiceTradeEntity, total=False):
    """Seed 002, "Asset" Returned Elements; status is active or inactive, ``properties`` the type's own
    key/value pairs."""

    location: LocationRef
    serviceLine: ServiceLine
    type: str
    legacyId: int | None
    display: str
    properties: dict[str, object]
    parent: Ref | None
    orderIndex: int | None


class User(ServiceTradeEntity, total=False):
    """Seed 002, "User" Returned Elements (only active users are returned)."""

    email: str
    avatar: Avatar
    firstName: str
    lastName: str
    username: str
    phone: str
    timezone: str
    isTech: bool
    isSales: bool
    isHelper: bool
    company: CompanyRef
    location: LocationRef
    account: Ref
    details: str
    serviceLines: list[ServiceLine]
    roles: list[Ref]


class AttachedTo(TypedDict, total=False):
    """Seed 002, "Attachment" Returned Elements, ``entity``: ``type`` is an entity type constant."""

    uri: str
    id: int
    type: int


class Attachment(ServiceTradeEntity, total=False):
    """Seed 002, "Attachment" Returned Elements; ``purposeId`` is an attachment purpose constant."""

    contentUrl: str
    checksum: str
    meta: dict[str, object]
    fileName: str
    fileType: str
    description: str
    purposeId: int
    purpose: str
    visibility: list[str]
    entity: AttachedTo
    creator: UserRef


class ServiceRequest(ServiceTradeEntity, total=False):
    """Seed 002, "ServiceRequest" Returned Elements; status is open, in_progress, closed, canceled, void
    or pending."""

    description: str
    serviceLine: ServiceLine
    asset: Ref | None
    location: LocationRef
    job: JobRef | None
    windowStart: int | None
    windowEnd: int | None
    closedOn: int | None
    preferredTechs: list[UserRef]
    preferredVendor: CompanyRef | None
    preferredStartTime: int | None
    estimatedPrice: float | None
    duration: int | None
    visibility: list[str]
    originalWindowStart: int | None
    originalWindowEnd: int | None


class Webhook(TypedDict, total=False):
    """Seed 002, Embedded Object Reference, "Webhook" (what ``/webhook`` returns and lists)."""

    id: int
    uri: str
    hookUrl: str
    enabled: bool
    confirmed: bool
    includeChangesets: bool


class Heartbeat(TypedDict, total=False):
    """Seed 002, "Heartbeat" Returned Elements (``GET /``, no auth)."""

    version: str
    serverTime: int


class Comment(TypedDict, total=False):
    """Seed 002, "Comment" Returned Elements: ``content``, ``visibility``, ``created``/``updated`` (Unix
    seconds), ``entity`` (the record it is on; a job's list also cascades its location's and customer's
    tech and schedule comments, which carry their own entity) and ``author``."""

    id: int
    uri: str
    content: str
    visibility: list[str]
    created: int
    updated: int
    entity: AttachedTo
    author: UserRef
