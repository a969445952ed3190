"""Write a phantom OpenI (Indiana University chest X-ray) release in the exact on-disk layout.

``ecgen-radiology/N.xml``: one report per study in the real XML structure (``eCitation`` with uId,
the four ``AbstractText`` sections, an empty one self-closed as in the release, ``MeSH/major`` and
``MeSH/automatic`` codes, one ``parentImage`` per image), the text made of
:mod:`cxr_tf.synth.reports` sentences (de-identified words as ``XXXX``); ``NLMCXR_png/<image id>.png``
(8-bit grayscale, as the PNG release), or with ``dicom=True`` ``NLMCXR_dcm/<n>_IM-xxxx-xxxx.dcm`` (CR,
12 bits stored, MONOCHROME1 or 2); and ``nlmcxr_dicom_metadata.csv.gz``, the DICOM header dump in its
real 176-column header, which leaves one image out as the real dump does. Reports have one to
four images (a frontal, usually a lateral); about a third of the views are blank in the dump.

The images show what the report says: a stated finding is drawn, a hedged one is drawn faint
(30-60 % strength), a denied one is not. Some reports have no FINDINGS section, and one (from ten
reports up) has no text at all, as in the release. Output is byte-identical for a seed.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from PIL import Image

from cxr_tf.core import atomic, cards
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.core.progress import progress
from cxr_tf.synth.lateral import render_lateral
from cxr_tf.synth.phantom import FINDINGS, render_phantom, sample_anatomy
from cxr_tf.synth.reports import FILLERS, HEDGES, PHRASES

log = logging.getLogger(__name__)
# (stated, hedged noun phrase, denied) of each finding: the synth reports' sentences where they
# name one, else these; and the MeSH heading the OpenI coders use for it.
_OWN = {
    "Infiltration": ("There is a patchy interstitial infiltrate in the right lower lobe.", "an infiltrate",
                     "No infiltrates are seen."),
    "Mass": ("A 4.5 cm mass projects over the left upper lobe.", "a mass", "No pulmonary mass is identified."),
    "Nodule": ("A 9 mm nodule is present in the right midlung.", "a small pulmonary nodule",
               "No pulmonary nodules are seen."),
    "Emphysema": ("The lungs are hyperinflated with changes of emphysema.", "emphysema", "There is no emphysema."),
    "Fibrosis": ("There is interstitial fibrosis at both lung bases.", "early pulmonary fibrosis",
                 "There is no fibrosis."),
    "Hernia": ("A large hiatal hernia is present.", "a small hiatal hernia", "There is no hiatal hernia."),
}
_SYNTH = {"Effusion": "Pleural Effusion", "Pleural_Thickening": "Pleural Other"}
PHRASE = {f: _OWN[f] if f in _OWN else PHRASES[_SYNTH.get(f, f)] for f in FINDINGS}
MESH = {"Atelectasis": "Pulmonary Atelectasis", "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion",
        "Infiltration": "Infiltrate", "Mass": "Mass", "Nodule": "Nodule", "Pneumonia": "Pneumonia",
        "Pneumothorax": "Pneumothorax", "Consolidation": "Consolidation", "Edema": "Pulmonary Edema",
        "Emphysema": "Pulmonary Emphysema", "Fibrosis": "Fibrosis", "Pleural_Thickening": "Thickening/pleura",
        "Hernia": "Hernia, Hiatal"}
INDICATIONS = ("XXXX-year-old male, chest pain.", "XXXX-year-old female with shortness of breath.",
               "Cough and fever.", "Preop exam", "XXXX-year-old male with hypertension.")
COMPARISONS = ("None.", "XXXX, XXXX", "Chest radiographs XXXX.", "")
CAPTION = "Xray Chest PA and Lateral"
METADATA_HEADER = (
    'imageid,Accession Number,Acquisition Device Processing Code,Approval Status,Bits Allocated,'
    'Bits Stored,Body Part Examined,Cassette Orientation,Cassette Size,Collimator/grid Name,Columns,'
    'Contrast/Bolus Agent,Contrast/Bolus Total Dose,Contrast/Bolus Volume,Exposure,'
    'Exposures on Plate,Filter Type,Focal Spot(s),High Bit,Image Type,Imager Pixel Spacing,'
    'Instance Creation Date,Instance Creation Time,Instance Number,KVP,LUT Descriptor,'
    'LUT Explanation,Laterality,Manufacturer,Modality,Patient ID,Patient Orientation,'
    "Patient Position,Patient's Birth Date,Patient's Name,Patient's Sex,Photometric Interpretation,"
    'Pixel Representation,Pixel Spacing,Plate Type,Polarity,Private Creator,'
    "Referring Physician's Name,Requested Procedure ID,Rescale Intercept,Rescale Slope,Rescale Type,"
    'Rows,SOP Class UID,SOP Instance UID,Samples per Pixel,Sensitivity,Series Instance UID,'
    'Series Number,Source Number,Source Type,Specific Character Set,Study Date,Study ID,'
    'Study Instance UID,Study Status ID,Study Time,View Position,filename,Study Priority ID,'
    'Anatomic Region Sequence,Burned In Annotation,Code Meaning,Code Value,Coding Scheme Designator,'
    'Collimator Left Vertical Edge,Collimator Lower Horizontal Edge,Collimator Right Vertical Edge,'
    'Collimator Shape,Collimator Upper Horizontal Edge,Content Date,Content Time,'
    "Date of Last Detector Calibration,Detector Manufacturer Name,Detector Manufacturer's Model Name,"
    'Detector Mode,Detector Temperature,Detector Time Since Last Exposure,Detector Type,'
    'Distance Source to Detector,Distance Source to Patient,Entrance Dose,'
    'Estimated Radiographic Magnification Factor,Exposure Control Mode,Exposure Dose Sequence,'
    'Exposure Time,Exposure Time in uS,Exposure in uAs,Field of View Horizontal Flip,'
    'Field of View Origin,Field of View Rotation,Film Consumption Sequence,Filter Material,Grid,'
    'Image Laterality,Image and Fluoroscopy Area Dose Product,Issue Date of Imaging Service Request,'
    'Lossy Image Compression,Performed Procedure Step Start Date,Performed Procedure Step Start Time,'
    'Performed Procedure Step Status,Pixel Intensity Relationship,Pixel Intensity Relationship Sign,'
    'Positioner Type,Presentation Intent Type,Presentation LUT Shape,'
    'Reason for the Requested Procedure,Relative X-Ray Exposure,Requested Procedure Priority,'
    'Spatial Resolution,Time of Last Detector Calibration,Total Number of Exposures,Window Center,'
    'Window Width,Breed Registration Sequence,Quality Control Image,'
    'Window Center & Width Explanation,Acquisition Number,Date of Last Calibration,'
    'Detector Conditions Nominal Flag,Grid Focal Distance,X-Ray Tube Current,Generator Power,'
    'Postprocessing Function,Processing Function,Time of Last Calibration,Images in Acquisition,'
    'Largest Image Pixel Value,Smallest Image Pixel Value,Comments on Radiation Dose,Conversion Type,'
    'Detector Active Dimension(s),Detector Active Shape,Detector Binning,Detector Configuration,'
    'Detector Element Physical Size,Detector Element Spacing,Exposure Control Mode Description,'
    'Field of View Dimension(s),Field of View Shape,Filter Thickness Maximum,'
    'Filter Thickness Minimum,Patient Gantry Relationship Code Sequence,'
    'Patient Orientation Code Sequence,Positioner Secondary Angle,'
    'Vertices of the Polygonal Collimator,View Code Sequence,View Modifier Code Sequence,'
    'Annotation Display Format ID,Border Density,Film Orientation,Image Display Format,Trim,,'
    'Context Group Version,Context Identifier,Mapping Resource,Pixel Aspect Ratio,'
    'Anode Target Material,Body Part Thickness,Compression Force,Entrance Dose in mGy,'
    'Phototimer Setting,Positioner Primary Angle,Number of Frames,Date of Secondary Capture,'
    'Secondary Capture Device ID,Secondary Capture Device Manufacturer,'
    "Secondary Capture Device Manufacturer's Model Name,Secondary Capture Device Software Versions,"
    'Time of Secondary Capture')


@dataclass(frozen=True)
class Report:
    """One planned report (study) and its images."""

    number: int
    stated: tuple
    hedged: tuple
    denied: tuple
    sections: tuple          # (comparison, indication, findings, impression) texts, "" when empty
    images: tuple            # (image id, view as the dump writes it or "", lateral, photometric)
    date: str
    birth: str


def _sentence(hedge: str, noun: str) -> str:
    text = hedge.format(noun)
    return text[:1].upper() + text[1:]


def _texts(rng, stated, hedged, denied, empty: str) -> tuple:
    """(comparison, indication, findings, impression); ``empty``: "", "findings" or "all"."""
    if empty == "all":
        return ("", "", "", "")
    said = [PHRASE[f][0] for f in stated] + [_sentence(HEDGES[int(rng.integers(len(HEDGES)))], PHRASE[f][1])
                                             for f in hedged] + [PHRASE[f][2] for f in denied]
    filler = [FILLERS[i] for i in rng.choice(len(FILLERS), size=int(rng.integers(1, 4)), replace=False)]
    sentences = said + filler
    findings = " ".join(sentences[i] for i in rng.permutation(len(sentences)))
    summary = [PHRASE[f][0] for f in stated] + [_sentence(HEDGES[0], PHRASE[f][1]) for f in hedged]
    impression = " ".join(summary) or "No acute cardiopulmonary abnormality."
    if empty == "findings":       # the impression then carries what the findings would have said
        impression = " ".join(said) or impression
        findings = ""
    return (str(rng.choice(COMPARISONS)), str(rng.choice(INDICATIONS)), findings, impression)


def plan(n_images: int, n_reports: int, seed: int) -> list[Report]:
    """Every report with its findings, text and images (deterministic for a seed)."""
    if n_images < 1 or not 1 <= n_reports <= n_images:
        raise CxrConfigError(f"need 1 <= reports ({n_reports}) <= images ({n_images})", key="patients")
    rng = np.random.default_rng([seed, 41])
    numbers = np.sort(rng.choice(np.arange(1, max(4000, 2 * n_reports)), n_reports, replace=False))
    per_report = 1 + rng.multinomial(n_images - n_reports, np.full(n_reports, 1 / n_reports))
    blank_text = int(rng.integers(n_reports)) if n_reports >= 10 else -1
    out, series = [], 1
    for k, (number, count) in enumerate(zip(numbers.tolist(), per_report.tolist())):
        pool = list(rng.permutation(FINDINGS))
        stated, hedged, denied = (), (), ()
        if k != blank_text and rng.random() > 0.4:
            stated = tuple(pool[: int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))])
            hedged = tuple(pool[len(stated): len(stated) + int(rng.random() < 0.25)])
        denied = tuple(f for f in pool[len(stated) + len(hedged):][:3] if rng.random() < 0.4) if k != blank_text else ()
        empty = "all" if k == blank_text else "findings" if rng.random() < 0.12 else ""
        images = []
        for j in range(count):
            lateral = j % 2 == 1
            view = ("LL" if rng.random() < 0.8 else "LATERAL") if lateral else ("PA" if rng.random() < 0.85 else "AP")
            images.append((f"CXR{number}_IM-{series:04d}-{j + 1}001", "" if rng.random() < 0.33 else view, lateral,
                           "MONOCHROME1" if rng.random() < 0.48 else "MONOCHROME2"))
        series += 1
        date = f"201{int(rng.integers(1, 3))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
        birth = f"{int(rng.integers(1920, 1995))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
        out.append(Report(number, stated, hedged, denied, _texts(rng, stated, hedged, denied, empty), tuple(images),
                          date, birth))
    return out


def render(rep: Report, size: int, seed: int) -> list[np.ndarray]:
    """The uint8 image of each image of a report: frontal views show the stated findings fully and
    the hedged ones faint, laterals show both; portrait, ``size`` wide."""
    r = np.random.default_rng([seed, 42, rep.number])
    anatomy = sample_anatomy(r)
    out = []
    for _, _, lateral, _ in rep.images:
        if lateral:
            pixels = render_lateral(rep.stated + rep.hedged, size, r, anatomy)
        else:
            state = r.bit_generator.state
            pixels = render_phantom(rep.stated, size, r, anatomy).image.astype(np.float32)
            if rep.hedged:          # same generator state: the renders differ only where the hedged ones are
                r.bit_generator.state = state
                full = render_phantom(rep.stated + rep.hedged, size, r, anatomy).image
                pixels += np.float32(r.uniform(0.3, 0.6)) * (full.astype(np.float32) - pixels)
            pixels = np.round(pixels).astype(np.uint8)
        out.append(np.asarray(Image.fromarray(pixels, mode="L").resize((size, round(size * 1.2)),
                                                                       Image.Resampling.BILINEAR)))
    return out


def report_xml(rep: Report) -> str:
    """The report XML, in the structure and indentation of the release's files."""
    def abstract(label, text):
        return (f'            <AbstractText Label="{label}">{escape(text)}</AbstractText>' if text
                else f'            <AbstractText Label="{label}"/>')
    labels = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
    major = [MESH[f] for f in rep.stated] or ["normal"]
    auto = [MESH[f].split("/")[0].lower() for f in rep.stated + rep.hedged]
    images = "".join(
        f'   <parentImage id={quoteattr(i)}>\n      <figureId>F{k + 1}</figureId>\n'
        f'      <caption>{CAPTION}</caption>\n      <panel type="single">\n'
        f'         <url>/hadoop/storage/radiology/extract/{i}.jpg</url>\n         <imgModality>7</imgModality>\n'
        f'         <region type="panel">\n            <globalImageFeatures>\n'
        f'               <CEDD>f2p0k{1000 + k}</CEDD>\n            </globalImageFeatures>\n         </region>\n'
        f'      </panel>\n   </parentImage>\n' for k, (i, *_) in enumerate(rep.images))
    n, day = rep.number, (rep.date[:4], rep.date[4:6], rep.date[6:])
    date = "\n".join(f"                  <{t}>{v}</{t}>" for t, v in zip(("Year", "Month", "Day"), day))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<eCitation>\n   <meta type="rr"/>\n'
        f'   <uId id="CXR{n}"/>\n   <pmcId id="{n}"/>\n   <docSource>CXR</docSource>\n   <IUXRId id="{n}"/>\n'
        '   <licenseType>open-access</licenseType>\n'
        '   <licenseURL>http://creativecommons.org/licenses/by-nc-nd/4.0/</licenseURL>\n'
        '   <ccLicense>byncnd</ccLicense>\n   <articleURL/>\n'
        f'   <articleDate>{"-".join(day)}</articleDate>\n   <articleType>XR</articleType>\n'
        '   <publisher>Indiana University</publisher>\n   <title>Indiana University Chest X-ray Collection</title>\n'
        '   <note>The data are drawn from multiple hospital systems.</note>\n'
        '   <specialty>pulmonary diseases</specialty>\n   <subset>CXR</subset>\n'
        '   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">\n'
        '      <Article PubModel="Electronic">\n         <Journal>\n            <JournalIssue>\n'
        f'               <PubDate>\n{date}\n               </PubDate>\n'
        '            </JournalIssue>\n         </Journal>\n'
        '         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>\n         <Abstract>\n'
        + "\n".join(abstract(lab, t) for lab, t in zip(labels, rep.sections)) +
        '\n         </Abstract>\n         <Affiliation>Indiana University</Affiliation>\n'
        '         <AuthorList CompleteYN="Y">\n            <Author ValidYN="Y">\n'
        '               <LastName>Phantom</LastName>\n               <ForeName>Reader</ForeName>\n'
        '               <Initials>MD</Initials>\n            </Author>\n         </AuthorList>\n'
        '         <Language>eng</Language>\n         <PublicationTypeList>\n'
        '            <PublicationType>Radiology Report</PublicationType>\n         </PublicationTypeList>\n'
        '      </Article>\n      <EssieArticleTitle>Indiana University Chest X-ray Collection</EssieArticleTitle>\n'
        '      <IMedAuthor>Reader Phantom MD</IMedAuthor>\n   </MedlineCitation>\n   <MeSH>\n'
        + "".join(f"      <major>{escape(m)}</major>\n" for m in major)
        + "".join(f"      <automatic>{escape(a)}</automatic>\n" for a in auto)
        + f"   </MeSH>\n{images}</eCitation>\n")


def dicom_bytes(rep: Report, image: tuple, display: np.ndarray, seed: int) -> bytes:
    """One image as the DICOM release stores it: CR, 12 bits stored (inverted for MONOCHROME1)."""
    import pydicom.uid as uids
    from pydicom.dataset import Dataset, FileMetaDataset

    image_id, view, _, photometric = image
    noise = np.random.default_rng([seed, 43, rep.number, len(image_id)]).normal(0.0, 6.0, display.shape)
    stored = np.clip(np.round(display.astype(np.float64) * (3500.0 / 255.0) + 300.0 + noise), 0, 4095)
    stored = (4095 - stored if photometric == "MONOCHROME1" else stored).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"     # CR Image Storage
    uid = uids.generate_uid(entropy_srcs=[str(seed), image_id])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = uids.generate_uid(entropy_srcs=[str(seed), str(rep.number)])
    ds.SeriesInstanceUID = uids.generate_uid(entropy_srcs=[str(seed), str(rep.number), "series"])
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", view
    ds.PatientID = ds.PatientName = str(rep.number)
    ds.PatientBirthDate, ds.StudyDate = rep.birth, rep.date
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.15, 0.15]
    ds.PixelData = stored.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def metadata_csv(reports: list[Report], sizes: dict) -> bytes:
    """The DICOM header dump (gzipped) in its real header; the first image is left out, as
    CXR1000_IM-0003-1001 is from the real dump."""
    names = next(csv.reader([METADATA_HEADER]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    rows = [(rep, im) for rep in reports for im in rep.images][1:]
    for rep, (image_id, view, _, photometric) in rows:
        width, height = sizes[image_id]
        values = {"imageid": image_id, "Bits Allocated": "16", "Bits Stored": "12", "Body Part Examined": "CHEST",
                  "Columns": str(width), "High Bit": "11", "Modality": "CR", "Patient ID": str(rep.number),
                  "Patient's Birth Date": rep.birth, "Patient's Name": str(rep.number),
                  "Photometric Interpretation": photometric, "Pixel Representation": "0",
                  "Pixel Spacing": "['0.1500', '0.1500']", "Rows": str(height), "Samples per Pixel": "1",
                  "Study Date": rep.date, "View Position": view, "filename": f"./{image_id[3:]}.dcm"}
        w.writerow([values.get(n, "") for n in names])
    return gzip.compress(buf.getvalue().encode("utf-8"), mtime=0)


def write_dataset(out_dir, n_images: int = 600, n_patients: int | None = None, size: int = 256, seed: int = 0,
                  dicom: bool = False, metadata: bool = True, workers: int | None = None) -> dict:
    """Write the phantom release into ``out_dir`` and return counts. ``n_patients``: the number of
    reports (each report stands in for a patient) [default: n_images / 2]; ``dicom``: the DICOM
    release instead of the PNG one; ``metadata``: write the DICOM header dump too. ``workers`` is
    accepted for the common writer signature (one process draws these small images)."""
    layout = cards.dataset_card("openi")["layout"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reports = plan(n_images, n_patients or max(1, n_images // 2), seed)
    sizes = {}
    for rep in progress(reports, desc="synth openi", unit="report"):
        atomic.write_text(out / layout["reports_dir"] / f"{rep.number}.xml", report_xml(rep))
        for image, pixels in zip(rep.images, render(rep, size, seed)):
            sizes[image[0]] = (pixels.shape[1], pixels.shape[0])
            if dicom:
                path = out / layout["dcm_dir"] / f"{image[0][3:]}.dcm"
                with atomic.atomic_path(path) as tmp:
                    Path(tmp).write_bytes(dicom_bytes(rep, image, pixels, seed))
            else:
                with atomic.atomic_path(out / layout["png_dirs"][0] / f"{image[0]}.png") as tmp:
                    Image.fromarray(pixels, mode="L").save(tmp, format="PNG", compress_level=3)
    if metadata:
        with atomic.atomic_path(out / f"{layout['metadata']}.gz") as tmp:
            Path(tmp).write_bytes(metadata_csv(reports, sizes))
    images = [im for rep in reports for im in rep.images]
    info = {"images": len(images), "patients": len(reports), "reports": len(reports), "size": size, "seed": seed,
            "release": "NLMCXR_dcm" if dicom else "NLMCXR_png",
            "stated": sum(len(r.stated) for r in reports), "hedged": sum(len(r.hedged) for r in reports),
            "blank_views": sum(not im[1] for im in images), "monochrome1": sum(im[3] == "MONOCHROME1" for im in images)}
    log.info("phantom OpenI in %s: %s", out, info)
    return info
