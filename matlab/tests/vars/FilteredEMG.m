classdef FilteredEMG < scistack.BaseVariable
end
