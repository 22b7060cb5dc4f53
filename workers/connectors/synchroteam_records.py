"""The Synchroteam v3 records `SynchroteamClient` reads, as the API documents them.

Each type lists the documented fields of one object (seed 000, Synchroteam API v3: "The job object",
"The customer object", "The site object", "The equipment object", "The activity object"). They are
``total=False``: the client does not validate the JSON it decodes, it only names its shape.
"""

from __future__ import annotations

from typing import TypedDict


class SynchroteamRecord(TypedDict, total=False):
    """What every listed record is read for: ``id``, ``myId`` and, where kept, its creation and modification dates.

    Seed 000: a job's ``id`` is a string (``"265_160719144323649"``), every other object's an integer.
    Customers, sites, equipment and jobs carry ``myId``, "your custom reference number" and the upsert
    key of ``/send``; activities have none (they upsert on ``id`` only).
    "The job object" documents ``dateCreated``/``dateModified`` (``dd/MM/yyyy HH:mm:ss``, zone not
    documented); the customer, site and equipment lists sort on them ("List customers": ``sort``) though
    their objects do not list them; activities have neither.
    """

    id: int | str
    myId: str
    dateCreated: str
    dateModified: str


class Ref(TypedDict, total=False):
    """A linked customer, site or equipment: "Object containing id, name and myId" (seed 000, job object)."""

    id: int
    myId: str
    name: str


class Named(TypedDict, total=False):
    """A job's ``type`` and ``reportTemplate``, a preference's ``schedulingWindow`` and ``team``."""

    id: int
    name: str


class UserRef(TypedDict, total=False):
    """A job's ``technician``, ``otherTechnicians[]``, ``createdBy``: "id, name and login"."""

    id: int
    name: str
    login: str


class Position(TypedDict, total=False):
    """``position``; the samples give both coordinates as strings."""

    latitude: str
    longitude: str


class CustomFieldValue(TypedDict, total=False):
    """Seed 000, "The custom field value object"."""

    id: int
    label: str
    value: str


class TimeEntry(TypedDict, total=False):
    """A job's ``timeEntries[]``: "a simplified user object, start (datetime) and stop (datetime)"."""

    user: UserRef
    start: str
    stop: str


class Part(TypedDict, total=False):
    """A job's ``parts[]``, as the job sample shows them."""

    id: int
    quantity: float
    reference: str
    serialNumbers: list[str] | None


class Preferences(TypedDict, total=False):
    """A job's ``preferences``: "Job Scheduling Preferences" (``date`` is ``yyyy-mm-dd``)."""

    date: str | None
    dateTime: str | None
    isDraft: bool
    isPool: bool
    schedulingWindow: Named | None
    team: Named | None
    user: UserRef | None


class ValidateBy(TypedDict, total=False):
    """A job's ``validateBy``: "id, login, name and date" (``yyyy-mm-dd hh:mm``)."""

    id: int
    login: str
    name: str
    date: str


class Addressed(TypedDict, total=False):
    """The address and contact fields that customers, sites and jobs share (seed 000)."""

    address: str
    addressStreet: str
    addressComplement: str
    addressZIP: str
    addressCity: str
    addressProvince: str
    addressCountry: str
    contactLastName: str
    contactFirstName: str
    contactPhone: str
    contactMobile: str
    contactEmail: str
    position: Position | None


class Job(SynchroteamRecord, Addressed, total=False):
    """Seed 000, "The job object" (``job/details``, ``job/list``, ``job/send``).

    ``status`` is one of created, scheduled, synchronized, started, paused, completed, validated,
    cancelled ([INCONS] the lifecycle also returns ``confirmed``); dates are ``dd/MM/yyyy HH:mm:ss``.
    """

    num: int
    priority: str
    description: str
    customer: Ref
    site: Ref | None
    equipment: Ref | None
    type: Named
    reportTemplate: Named | None
    technician: UserRef | None
    otherTechnicians: list[UserRef]
    createdBy: UserRef
    scheduledStart: str | None
    scheduledEnd: str | None
    actualStart: str | None
    actualEnd: str | None
    duration: int
    status: str
    publicLink: str
    timeEntries: list[TimeEntry]
    parts: list[Part]
    report: object  # "Report details, as filled by the technician"; its shape is not documented
    customFieldValues: list[CustomFieldValue]
    tags: list[str]
    skills: list[str]
    preferences: Preferences
    validateBy: ValidateBy | None


class Customer(SynchroteamRecord, Addressed, total=False):
    """Seed 000, "The customer object" (``customer/details``, ``customer/list``, ``customer/send``)."""

    name: str
    contactFax: str
    vatNumber: str
    publicLink: str
    customFieldValues: list[CustomFieldValue]
    tags: list[str]


class Site(SynchroteamRecord, Addressed, total=False):
    """Seed 000, "The site object": a customer's site (``customer`` is "id, name and myId")."""

    name: str
    contactFax: str
    publicLink: str
    customer: Ref
    customFieldValues: list[CustomFieldValue]
    tags: list[str]


class Equipment(SynchroteamRecord, total=False):
    """Seed 000, "The equipment object": linked to a customer and/or a site."""

    name: str
    publicLink: str
    customer: Ref | None
    site: Ref | None
    customFieldValues: list[CustomFieldValue]
    tags: list[str]


class ActivityType(TypedDict, total=False):
    """An activity's ``activityType``: "id, name, category and payable flag" (category ``unavail``,
    ``atwork``, ``travel`` or ``clock``)."""

    id: int
    name: str
    category: str
    payable: bool


class Distance(TypedDict, total=False):
    """An activity's ``distance``, "in kilometers (km) and miles (mi)"; travel activities only."""

    km: float
    mi: float


class ActivityUser(TypedDict, total=False):
    """An activity's ``user``: "id, login, firstName and lastName"."""

    id: int
    login: str
    firstName: str
    lastName: str


class Activity(SynchroteamRecord, total=False):
    """Seed 000, "The activity object"; ``dateStart``/``dateEnd`` are local ``YYYY-MM-DD hh:mm``.

    No ``myId``: activities upsert on ``id`` only, so fieldrelay keeps the mapping in its link store.
    """

    activityType: ActivityType
    note: str
    dateStart: str
    dateEnd: str
    distance: Distance | None
    user: ActivityUser
    team: Named | None


class ReportItem(TypedDict, total=False):
    """One item of a report block: seed 000, "The job report object" (``issue`` is ``-``, ``None``,
    ``Issue Reported`` or ``Resolved``; a ``list`` item's ``listValues`` is not shown)."""

    id: int
    type: str
    name: str
    isMandatory: bool
    isPrivate: bool
    conditionByItem: int
    conditionValue: str
    position: int
    value: str
    comment: str
    issue: str


class ReportBlock(TypedDict, total=False):
    """One block of ``jobReport/details``: seed 000, "Retrieve a job report".

    [INCONS] the first sample block says ``name``, the second ``blockName``.
    """

    id: int
    name: str
    blockName: str
    isShared: bool
    iteration: int
    isMandatory: bool
    position: int
    items: list[ReportItem]


class Photo(TypedDict, total=False):
    """Seed 000, "Retrieve job photos": ``url``, ``fileName``, ``iteration``, ``comment``, ``imageData``
    (Base64, only with ``getImageData=true``; null otherwise)."""

    url: str
    fileName: str
    iteration: int
    comment: str
    imageData: str | None


class JobPhotos(TypedDict, total=False):
    """``job/photos``: "A simplified job object and the list of photos for the job"."""

    job: Ref
    photos: list[Photo]
