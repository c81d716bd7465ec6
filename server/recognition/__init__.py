"""Recognition: face templates (face_recognition's dlib 128-d), the in-memory matcher, and
the gallery that stores templates (SQLite). Runs only after a live verdict."""

from facegate.server.recognition.gallery import Gallery, validate_subject_id
from facegate.server.recognition.matcher import TEMPLATE_DIM, Matcher, MatchResult, Subject
from facegate.server.recognition.templates import TemplateEncoder, face_template, mean_template

__all__ = ["TEMPLATE_DIM", "Gallery", "MatchResult", "Matcher", "Subject", "TemplateEncoder",
           "face_template",
           "mean_template", "validate_subject_id"]
