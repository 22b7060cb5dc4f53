"""The Synergist v3.2 records `SynergistClient` reads, as the API documents them.

Seed 001 (Synergist API v3.2): "Using data models" and "Activity details" show the ``activitylist`` and
``activitydetails`` models, "List jobs" and "Job details" the ``jobslist`` and ``jobdetails`` models.
Only the fields the digest lists and the samples show are named here; records also carry custom
fields (``activityCustomField<N>``, ``jobCustomField<N>``), which a TypedDict cannot list. They are
``total=False``: the list model returns fewer fields than the details model. Codes are
company-prefixed (``"1/00000510"``); empty dates are ``"0000-00-00"``.
"""

from __future__ import annotations

from typing import TypedDict


class Activity(TypedDict, total=False):
    """Seed 001, "Activity details" (``activities.json``, ``modelstructure=activitydetails``).

    ``activityRecordVersionNumber`` "must be passed back when doing an update"; ``activityTimeStampModified``
    is Unix seconds.
    """

    activityID: int
    activityuuid: str
    activityTimeStampModified: int
    activityRecordVersionNumber: int
    activitySubject: str
    activityDetails: str
    activityClientCode: str
    activityClientName: str
    activityJobNumber: str
    activityJobAndPhase: str
    activityActivitytypeCode: str
    activityActivitytype: str
    activityOwnerID: int
    activityOwnerName: str
    activityStatus: str
    activityCompleted: bool
    activityDateDue: str
    activityTimeDue: str
    activityPriorityDescription: str
    activityTeamCode: str
    activityCompanyNumber: int
    activityCreationDate: str
    activityLastModifiedDate: str


class Job(TypedDict, total=False):
    """Seed 001, "Job details" (``jobs.json``, ``modelstructure=jobdetails``).

    ``jobStatus`` is 1 Quote, 2 Live, 3 In house, 4 On hold, 5 Special. Jobs carry
    ``jobRecommendedVersionNumber``, not ``…RecordVersionNumber``; ``jobTimeStampModified`` is Unix seconds.
    """

    jobNumber: str
    jobNumberSimple: str
    jobUuid: str
    jobTimeStampModified: int
    jobRecommendedVersionNumber: int
    jobStatus: int
    jobStatusDescription: str
    jobClientCode: str
    jobClientName: str
    jobDateIn: str
    jobDateDue: str
    jobCompleted: bool
    jobCompletedDate: str
    jobDescription: str
    jobComments: str
    jobOrderNumber: str
    jobReferenceJob: str
    jobHandlerUserID: int
    jobHandlerTeam: str
    jobJobtypeCode: str
    jobProjectCode: int
    jobCampaignNo: int
    jobContactInternalRef: int
    jobCurrencyCode: str
    jobWorkflowCode: str


SynergistRecord = Activity | Job


class Phase(TypedDict, total=False):
    """Seed 001, "Phases" (``phaseslist``): a job's phase, ``phaseJobAndPhase`` is what ``Jobphase=`` and a
    timesheet's ``tspJobAndPhase`` take (``"1/00000519.001"``)."""

    phaseuuid: str
    phaseTimeStampModified: int
    phaseRecordVersionNumber: int
    phaseJobNumber: str
    phaseJobAndPhase: str
    phasePhase: str
    phaseStatus: str


class Estimate(TypedDict, total=False):
    """Seed 001, calendar "Unallocated list" (``action=unallocated``): an estimate to book time against.

    [INCONS] the sample names the booking key ``calTimeSummarySelect``; a booking's create takes
    ``calTimeSummaryInternal``. The client fills the second from the first.
    """

    calTimeSummaryInternal: int
    calTimeSummarySelect: int
    calJobPhaseSelect: str
    calChargeCodeSelect: str
    calChargeDescSelect: str
    calClientSelect: str
    calEstimatedSelect: float
    calBookedSelect: float
    calRemainingSelect: float
    calStatusSelect: str
    calUniqueSelect: str
