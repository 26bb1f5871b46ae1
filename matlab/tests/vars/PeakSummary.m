classdef PeakSummary < scistack.BaseVariable
end
